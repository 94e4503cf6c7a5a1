"""What Vidu accepts (seed 004): the single source for validation and the slash-command choices."""

from __future__ import annotations

from collections.abc import Iterator

from providers.media import ImageFormat, ImageLimits
from providers.options import Capabilities, Operation, OptionSpec, Params, join_choices
from providers.vidu.models import MODELS, MOVEMENT_AMPLITUDES, PROMPT_MAX_LENGTH, RESOLUTIONS

MB = 1024 * 1024
DEFAULT_MODEL = "viduq2"
SEED_MAX = 2147483647

#: (shortest, longest) duration in seconds per model. Sources: seed 004 for viduq3-*, viduq2 and viduq1;
#: Vidu's older image-to-video page (mirrored in ZeoXel/SUNSTUDIO docs/vidu.md, notes §4) for the others.
DURATIONS: dict[str, tuple[int, int]] = {
    "viduq3-pro": (1, 16),  # seed 004
    "viduq3-turbo": (1, 16),  # seed 004
    "viduq2": (1, 10),  # seed 004
    "viduq2-pro": (1, 10),  # older page; seed 004's own example sends it
    "viduq2-turbo": (1, 10),  # older page
    "viduq2-pro-fast": (1, 10),  # older page
    "viduq1": (5, 5),  # seed 004
    "viduq1-classic": (5, 5),  # older page
}
MODEL_RESOLUTIONS: dict[str, tuple[str, ...]] = {
    "viduq3-pro": ("540p", "720p", "1080p"),  # seed 004
    "viduq3-turbo": ("540p", "720p", "1080p"),  # seed 004
    "viduq2": ("540p", "720p", "1080p"),  # seed 004
    "viduq2-pro": ("540p", "720p", "1080p"),  # older page
    "viduq2-turbo": ("540p", "720p", "1080p"),  # older page
    "viduq2-pro-fast": ("720p", "1080p"),  # older page: no 540p
    "viduq1": ("1080p",),  # seed 004
    "viduq1-classic": ("1080p",),  # older page
}
#: Models that make sound by default; audio cannot be combined with off-peak.
AUDIO_BY_DEFAULT = ("viduq3-pro", "viduq3-turbo")
#: viduq2 ignores movement_amplitude (seed 004), so asking for it would silently do nothing; the older page
#: names no such limit for the viduq2-* models.
NO_MOVEMENT_AMPLITUDE = ("viduq2",)

IMAGE_LIMITS = ImageLimits(
    formats=frozenset({ImageFormat.PNG, ImageFormat.JPEG, ImageFormat.WEBP}),
    # The image goes inside the JSON body as a data URI; an older page caps the decoded image under 10 MB,
    # which also keeps the body under the newer 20 MB limit.
    max_bytes=10 * MB - 1,
    max_side=4096,
    min_aspect=1 / 4,
    max_aspect=4,
)


def audio_on(params: Params) -> bool:
    """Whether the job makes sound: the user's choice, else the model's default (never with off-peak)."""
    if "audio" in params:
        return bool(params["audio"])
    return str(params["model"]) in AUDIO_BY_DEFAULT and not params.get("off_peak")


def _model_rules(params: Params) -> Iterator[str]:
    model = str(params["model"])
    duration = params.get("duration")
    shortest, longest = DURATIONS[model]
    if duration is not None and not shortest <= int(duration) <= longest:
        span = f"{shortest} seconds" if shortest == longest else f"{shortest} to {longest} seconds"
        yield f"Vidu {model} makes videos of {span}; change `duration`."
    resolution = params.get("resolution")
    if resolution is not None and resolution not in MODEL_RESOLUTIONS[model]:
        yield f"Vidu {model} renders at {join_choices(MODEL_RESOLUTIONS[model])}; change `resolution`."
    if "movement_amplitude" in params and model in NO_MOVEMENT_AMPLITUDE:
        yield f"Vidu {model} ignores `movement_amplitude`; leave it out or choose another model."
    if params.get("audio") is True and params.get("off_peak") is True:
        yield "Vidu cannot make audio in off-peak mode; turn off `audio` or `off_peak`."
    if "voice_id" in params and not audio_on(params):
        yield "`voice_id` only works with audio; set `audio` to true or leave the voice out."


IMAGE_TO_VIDEO = Capabilities(
    provider="Vidu",
    command="/animate vidu",
    operation=Operation.IMAGE_TO_VIDEO,
    options=(
        OptionSpec("prompt", str, "What should happen in the video.", max_length=PROMPT_MAX_LENGTH, required=True),
        OptionSpec("model", str, "Vidu model.", choices=MODELS, default=DEFAULT_MODEL),
        OptionSpec(
            "duration", int, "Length in seconds (q3: 1-16, q2: 1-10, q1: 5).", min_value=1, max_value=16, default=5
        ),
        OptionSpec(
            "resolution",
            str,
            "Output resolution (q1 models: 1080p only; viduq2-pro-fast: no 540p).",
            choices=RESOLUTIONS,
        ),
        OptionSpec("movement_amplitude", str, "How much things move (not on viduq2).", choices=MOVEMENT_AMPLITUDES),
        OptionSpec(
            "seed", int, "Seed for repeatable results (0 picks one at random).", min_value=0, max_value=SEED_MAX
        ),
        OptionSpec("audio", bool, "Sound and speech with the video (on by default for q3 models)."),
        OptionSpec("voice_id", str, "Voice for the speech (needs audio).", max_length=200),
        OptionSpec("off_peak", bool, "Cheaper, but may take up to 48 hours; no audio."),
        OptionSpec("recommend_prompt", bool, "Let Vidu write the prompt (costs 10 more credits)."),
    ),
    media=IMAGE_LIMITS,
    rules=(_model_rules,),
    rules_need=("model",),
)

CAPABILITIES = {Operation.IMAGE_TO_VIDEO: IMAGE_TO_VIDEO}

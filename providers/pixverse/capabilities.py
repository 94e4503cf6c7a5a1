"""What PixVerse accepts (seed 002): the single source for validation and the slash-command choices."""

from __future__ import annotations

from collections.abc import Iterator

from providers.media import ImageFormat, ImageLimits
from providers.options import Capabilities, Operation, OptionSpec, Params, join_choices
from providers.pixverse.models import (
    CAMERA_MOVEMENTS,
    LIP_SYNC_MAX_LENGTH,
    MODELS,
    PROMPT_MAX_LENGTH,
    QUALITIES,
    SEED_MAX,
    STYLE_ALIASES,
    STYLES,
)

MB = 1024 * 1024
DEFAULT_MODEL = "v5"

#: Durations per model; v6 and c1 take any whole second from 1 to 15.
DURATIONS: dict[str, tuple[int, ...]] = {
    "v3.5": (5, 8),
    "v4": (5, 8),
    "v4.5": (5, 8),
    "v5": (5, 8),
    "v5.5": (5, 8, 10),
    "v5.6": (5, 8, 10),
    "v6": tuple(range(1, 16)),
    "c1": tuple(range(1, 16)),
}
#: Durations a model cannot make at 1080p.
NOT_AT_1080P: dict[str, tuple[int, ...]] = {"v3.5": (8,), "v5.5": (10,), "v5.6": (10,)}
MOTION_MODE_MODELS = ("v3.5", "v4", "v4.5")
CAMERA_MOVEMENT_MODELS = ("v4", "v4.5")
SOUND_EFFECT_MODELS = ("v3.5", "v4", "v4.5")
AUDIO_MODELS = ("v5.5", "v5.6", "v6", "c1")
MULTI_CLIP_MODELS = ("v5.5", "v6")
THINKING_MODELS = ("v5.5", "v5.6", "v6")
#: Options that only some models take, with those models.
MODEL_ONLY_OPTIONS: dict[str, tuple[str, ...]] = {
    "motion_mode": MOTION_MODE_MODELS,
    "camera_movement": CAMERA_MOVEMENT_MODELS,
    "sound_effect": SOUND_EFFECT_MODELS,
    "audio": AUDIO_MODELS,
    "multi_clip": MULTI_CLIP_MODELS,
    "thinking": THINKING_MODELS,
}

IMAGE_LIMITS = ImageLimits(
    formats=frozenset({ImageFormat.PNG, ImageFormat.JPEG, ImageFormat.WEBP}),
    # "< 20 MB" and at most 4000 x 4000 (the API reference; other pages allow more).
    max_bytes=20 * MB - 1,
    max_side=4000,
)


def _model_rules(params: Params) -> Iterator[str]:
    model = str(params["model"])
    duration = params.get("duration")
    allowed = DURATIONS[model]
    if duration is not None and duration not in allowed:
        span = "1 to 15 seconds" if len(allowed) > 3 else join_choices(allowed) + " seconds"
        yield f"PixVerse {model} makes videos of {span}; change `duration`."
    if params.get("quality") == "1080p" and duration in NOT_AT_1080P.get(model, ()):
        yield f"PixVerse {model} cannot make {duration} s at 1080p; pick a shorter `duration` or a lower `quality`."
    for option, models in MODEL_ONLY_OPTIONS.items():
        if option in params and model not in models:
            yield f"PixVerse {model} does not take `{option}`; leave it out or choose model {join_choices(models)}."
    if params.get("motion_mode") == "fast" and duration is not None and duration != 5:
        yield "`motion_mode` fast only makes 5-second videos; set `duration` to 5 or use normal motion."
    if "lip_sync_voice" in params and "lip_sync_text" not in params:
        yield "`lip_sync_voice` needs `lip_sync_text`: add the words to speak, or leave the voice out."


IMAGE_TO_VIDEO = Capabilities(
    provider="PixVerse",
    command="/animate pixverse",
    operation=Operation.IMAGE_TO_VIDEO,
    options=(
        OptionSpec("prompt", str, "What should happen in the video.", max_length=PROMPT_MAX_LENGTH, required=True),
        OptionSpec("model", str, "PixVerse model version.", choices=MODELS, default=DEFAULT_MODEL),
        OptionSpec(
            "duration",
            int,
            "Length in seconds (5 or 8; v5.5/v5.6 also 10; v6/c1 1-15).",
            min_value=1,
            max_value=15,
            default=5,
        ),
        OptionSpec("quality", str, "Output resolution.", choices=QUALITIES, default="720p"),
        OptionSpec(
            "motion_mode",
            str,
            "Normal or fast motion (models before v5; fast makes 5 s only).",
            choices=("normal", "fast"),
        ),
        OptionSpec("camera_movement", str, "A camera move (v4 and v4.5 only).", choices=CAMERA_MOVEMENTS),
        OptionSpec("style", str, "A visual style.", choices=STYLES, aliases=STYLE_ALIASES),
        OptionSpec("seed", int, "Seed for repeatable results (0 to 2147483647).", min_value=0, max_value=SEED_MAX),
        OptionSpec("negative_prompt", str, "What the video should avoid.", max_length=PROMPT_MAX_LENGTH),
        OptionSpec("audio", bool, "Generate sound with the video (v5.5, v5.6, v6, c1)."),
        OptionSpec("multi_clip", bool, "Several shots instead of one (v5.5, v6)."),
        OptionSpec(
            "thinking",
            str,
            "Let PixVerse refine your prompt (v5.5, v5.6, v6).",
            choices=("enabled", "disabled", "auto"),
        ),
        OptionSpec(
            "sound_effect",
            str,
            "Add a sound effect: describe it, or write auto (models before v5).",
            max_length=PROMPT_MAX_LENGTH,
        ),
        OptionSpec("lip_sync_text", str, "Words the subject speaks, lip-synced.", max_length=LIP_SYNC_MAX_LENGTH),
        OptionSpec("lip_sync_voice", str, "Voice id for the lip-synced speech."),
    ),
    media=IMAGE_LIMITS,
    rules=(_model_rules,),
    rules_need=("model",),
)

CAPABILITIES = {Operation.IMAGE_TO_VIDEO: IMAGE_TO_VIDEO}

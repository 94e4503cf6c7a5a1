"""What HiDream accepts: the single source for validation and the slash-command choices."""

from __future__ import annotations

from collections.abc import Iterator

from providers.hidream.models import RESOLUTIONS, Style
from providers.media import ImageFormat, ImageLimits, VideoLimits
from providers.options import Capabilities, Operation, OptionSpec, Params

MB = 1024 * 1024

#: Not documented by HiDream; our own cap so a runaway prompt is refused before it is sent.
PROMPT_MAX_LENGTH = 2000

IMAGE_LIMITS = ImageLimits(
    formats=frozenset({ImageFormat.PNG, ImageFormat.JPEG, ImageFormat.WEBP}),
    # Undocumented; the image travels as base64 inside JSON and the output is at most 1280 px,
    # so a smaller input costs nothing in quality.
    max_bytes=10 * MB,
    max_side=2048,
)

#: Undocumented as well; the video travels as base64 inside JSON.
VIDEO_LIMITS = VideoLimits(max_bytes=20 * MB)


def _camera(axis: str, meaning: str) -> OptionSpec:
    return OptionSpec(
        f"camera_{axis}",
        int,
        f"Camera move {meaning}, from -5 to 5 (0 keeps the camera still).",
        min_value=-5,
        max_value=5,
        default=0,
    )


IMAGE_TO_VIDEO = Capabilities(
    provider="HiDream",
    command="/animate hidream",
    operation=Operation.IMAGE_TO_VIDEO,
    options=(
        OptionSpec("prompt", str, "What should happen in the video.", max_length=PROMPT_MAX_LENGTH, default=""),
        OptionSpec("negative_prompt", str, "What the video should avoid.", max_length=PROMPT_MAX_LENGTH, default=""),
        OptionSpec(
            "resolution",
            str,
            "Output size as width*height; by default the one closest to your image's shape.",
            choices=RESOLUTIONS,
        ),
        _camera("horizontal", "left (-) or right (+)"),
        _camera("vertical", "down (-) or up (+)"),
        _camera("depth", "out (-) or in (+)"),
        OptionSpec(
            "motion_strength",
            float,
            "How much moves, from 0 to 30 (9 by default).",
            min_value=0,
            max_value=30,
            default=9.0,
        ),
    ),
    media=IMAGE_LIMITS,
)


def _style_or_prompt(params: Params) -> Iterator[str]:
    if not params.get("style") and not params.get("prompt"):
        yield "Pick a `style` or describe one in `prompt`: HiDream needs one of the two to restyle a video."


STYLIZE = Capabilities(
    provider="HiDream",
    command="/stylize",
    operation=Operation.STYLIZE,
    options=(
        OptionSpec("style", str, "A ready-made style for the video.", choices=tuple(style.value for style in Style)),
        OptionSpec("prompt", str, "The look you want, in words.", max_length=PROMPT_MAX_LENGTH),
    ),
    media=VIDEO_LIMITS,
    rules=(_style_or_prompt,),
    rules_need=("style", "prompt"),
)

CAPABILITIES = {Operation.IMAGE_TO_VIDEO: IMAGE_TO_VIDEO, Operation.STYLIZE: STYLIZE}

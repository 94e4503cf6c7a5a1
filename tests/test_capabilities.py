"""The capability tables: every option rule the seeds state, each violation one sentence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.hidream.capabilities import IMAGE_TO_VIDEO as HIDREAM
from providers.hidream.capabilities import STYLIZE
from providers.options import Capabilities
from providers.pixverse.capabilities import DURATIONS as PIXVERSE_DURATIONS
from providers.pixverse.capabilities import IMAGE_TO_VIDEO as PIXVERSE
from providers.vidu.capabilities import DURATIONS as VIDU_DURATIONS
from providers.vidu.capabilities import IMAGE_TO_VIDEO as VIDU
from providers.vidu.capabilities import MODEL_RESOLUTIONS as VIDU_RESOLUTIONS
from providers.vidu.capabilities import audio_on


def params(**values: Any) -> dict[str, Any]:
    return values


VALID = [
    (HIDREAM, params()),
    (HIDREAM, params(prompt="a cat waves", resolution="720*1280", camera_horizontal=-5, camera_depth=5)),
    (HIDREAM, params(motion_strength=0.0, camera_vertical=0, negative_prompt="blur")),
    (HIDREAM, params(motion_strength=30)),
    (STYLIZE, params(style="ink_wash")),
    (STYLIZE, params(prompt="like a comic book")),
    (STYLIZE, params(style="anime", prompt="bright colours")),
    (PIXVERSE, params(prompt="p")),
    (PIXVERSE, params(prompt="p", model="v3.5", duration=8, quality="720p", motion_mode="normal")),
    (PIXVERSE, params(prompt="p", model="v4", camera_movement="zoom_in", sound_effect="rain")),
    (PIXVERSE, params(prompt="p", model="v4.5", motion_mode="fast", duration=5, camera_movement="hitchcock")),
    (PIXVERSE, params(prompt="p", model="v5.5", duration=10, quality="720p", audio=True, multi_clip=True)),
    (PIXVERSE, params(prompt="p", model="v5.6", thinking="auto", audio=False)),
    (PIXVERSE, params(prompt="p", model="v6", duration=1, quality="1080p", thinking="enabled", multi_clip=False)),
    (PIXVERSE, params(prompt="p", model="c1", duration=15, audio=True, seed=2147483647, style="comic")),
    (PIXVERSE, params(prompt="p", lip_sync_text="hello there", lip_sync_voice="voice-1")),
    (PIXVERSE, params(prompt="p" * 2048, negative_prompt="n" * 2048)),
    (VIDU, params(prompt="p")),
    (VIDU, params(prompt="p", model="viduq3-pro", duration=16, resolution="1080p", audio=True, voice_id="v")),
    (VIDU, params(prompt="p", model="viduq3-turbo", duration=1, resolution="540p", movement_amplitude="large")),
    (VIDU, params(prompt="p", model="viduq3-turbo", voice_id="v")),
    (VIDU, params(prompt="p", model="viduq2", duration=10, off_peak=True, seed=0, recommend_prompt=True)),
    (VIDU, params(prompt="p", model="viduq1", duration=5, resolution="1080p", movement_amplitude="small")),
    (VIDU, params(prompt="p", model="viduq3-pro", off_peak=True)),
    (VIDU, params(prompt="p" * 2000)),
]


@pytest.mark.parametrize(("caps", "values"), VALID)
def test_valid_requests_pass(caps: Capabilities, values: dict[str, Any]) -> None:
    assert caps.validate(values) == []


INVALID = [
    # Shared checks: unknown options, types, choices, ranges, lengths, required options.
    (HIDREAM, params(style="anime"), "`style` is not an option of /animate hidream; remove it."),
    (HIDREAM, params(resolution="1920*1080"), "`resolution` must be one of 960*960, 1280*720, 720*1280"),
    (HIDREAM, params(camera_horizontal=6), "`camera_horizontal` must be between -5 and 5 (you gave 6)."),
    (HIDREAM, params(camera_depth=-6), "`camera_depth` must be between -5 and 5 (you gave -6)."),
    (HIDREAM, params(camera_vertical=1.5), "`camera_vertical` must be a whole number."),
    (HIDREAM, params(motion_strength=30.5), "`motion_strength` must be between 0 and 30 (you gave 30.5)."),
    (HIDREAM, params(motion_strength=-1), "`motion_strength` must be between 0 and 30 (you gave -1)."),
    (HIDREAM, params(prompt="x" * 2001), "`prompt` is 2,001 characters long but HiDream accepts at most 2,000"),
    (STYLIZE, params(), "Pick a `style` or describe one in `prompt`"),
    (STYLIZE, params(style="oil_paint"), "`style` must be one of barbie_doll, ink_wash, van_goph"),
    (PIXVERSE, params(), "Add `prompt`: PixVerse needs it"),
    (PIXVERSE, params(prompt="p", model="v7"), "`model` must be one of v3.5, v4, v4.5, v5, v5.5, v5.6, v6, c1"),
    (PIXVERSE, params(prompt="p", quality="4k"), "`quality` must be one of 360p, 540p, 720p, 1080p (you gave 4k)."),
    (PIXVERSE, params(prompt="p", seed=-1), "`seed` must be between 0 and 2147483647 (you gave -1)."),
    (PIXVERSE, params(prompt="p", seed=2147483648), "`seed` must be between 0 and 2147483647"),
    (PIXVERSE, params(prompt="p" * 2049), "`prompt` is 2,049 characters long but PixVerse accepts at most 2,048"),
    (PIXVERSE, params(prompt="p", negative_prompt="n" * 2049), "`negative_prompt` is 2,049 characters long"),
    (PIXVERSE, params(prompt="p", audio="yes"), "`audio` must be true or false."),
    (PIXVERSE, params(prompt="p", style="noir"), "`style` must be one of anime, 3d_animation, clay, cyberpunk, comic"),
    (PIXVERSE, params(prompt="p", lip_sync_text="x" * 141), "`lip_sync_text` is 141 characters long"),
    # PixVerse rules between options (seed 002).
    (PIXVERSE, params(prompt="p", model="v5", duration=10), "PixVerse v5 makes videos of 5 or 8 seconds"),
    (PIXVERSE, params(prompt="p", model="v5.5", duration=6), "PixVerse v5.5 makes videos of 5, 8 or 10 seconds"),
    (PIXVERSE, params(prompt="p", model="v4", duration=3), "PixVerse v4 makes videos of 5 or 8 seconds"),
    (PIXVERSE, params(prompt="p", model="v3.5", duration=8, quality="1080p"), "PixVerse v3.5 cannot make 8 s at 1080p"),
    (PIXVERSE, params(prompt="p", model="v5.6", duration=10, quality="1080p"), "PixVerse v5.6 cannot make 10 s"),
    (PIXVERSE, params(prompt="p", model="v5", motion_mode="normal"), "PixVerse v5 does not take `motion_mode`"),
    (PIXVERSE, params(prompt="p", model="v4", motion_mode="fast", duration=8), "`motion_mode` fast only makes 5"),
    (PIXVERSE, params(prompt="p", model="v3.5", camera_movement="zoom_in"), "v3.5 does not take `camera_movement`"),
    (PIXVERSE, params(prompt="p", model="v5", camera_movement="zoom_in"), "choose model v4 or v4.5"),
    (PIXVERSE, params(prompt="p", model="v5", sound_effect="rain"), "PixVerse v5 does not take `sound_effect`"),
    (PIXVERSE, params(prompt="p", model="v5", audio=True), "PixVerse v5 does not take `audio`"),
    (PIXVERSE, params(prompt="p", model="v5.6", multi_clip=True), "PixVerse v5.6 does not take `multi_clip`"),
    (PIXVERSE, params(prompt="p", model="c1", thinking="enabled"), "PixVerse c1 does not take `thinking`"),
    (PIXVERSE, params(prompt="p", lip_sync_voice="voice-1"), "`lip_sync_voice` needs `lip_sync_text`"),
    # Vidu (seed 004).
    (VIDU, params(), "Add `prompt`: Vidu needs it"),
    (VIDU, params(prompt="p" * 2001), "`prompt` is 2,001 characters long but Vidu accepts at most 2,000"),
    (
        VIDU,
        params(prompt="p", model="vidu2"),
        "`model` must be one of viduq3-pro, viduq3-turbo, viduq2, viduq2-pro, viduq2-turbo, viduq2-pro-fast, "
        "viduq1, viduq1-classic (you gave vidu2).",
    ),
    (VIDU, params(prompt="p", duration=17), "`duration` must be between 1 and 16 (you gave 17)."),
    (VIDU, params(prompt="p", model="viduq2", duration=12), "Vidu viduq2 makes videos of 1 to 10 seconds"),
    (VIDU, params(prompt="p", model="viduq1", duration=8), "Vidu viduq1 makes videos of 5 seconds"),
    (VIDU, params(prompt="p", model="viduq1", resolution="720p"), "Vidu viduq1 renders at 1080p; change `resolution`."),
    (VIDU, params(prompt="p", resolution="4k"), "`resolution` must be one of 540p, 720p, 1080p"),
    (VIDU, params(prompt="p", model="viduq2", movement_amplitude="large"), "viduq2 ignores `movement_amplitude`"),
    (VIDU, params(prompt="p", movement_amplitude="huge"), "`movement_amplitude` must be one of auto, small"),
    (VIDU, params(prompt="p", audio=True, off_peak=True), "Vidu cannot make audio in off-peak mode"),
    (VIDU, params(prompt="p", model="viduq2", voice_id="v"), "`voice_id` only works with audio"),
    (VIDU, params(prompt="p", model="viduq3-pro", off_peak=True, voice_id="v"), "`voice_id` only works with audio"),
]


@pytest.mark.parametrize(("caps", "values", "expected"), INVALID)
def test_each_violation_is_one_actionable_sentence(caps: Capabilities, values: dict[str, Any], expected: str) -> None:
    problems = caps.validate(values)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].endswith(".")
    assert "\n" not in problems[0]


def test_every_violation_is_reported_at_once() -> None:
    problems = PIXVERSE.validate(
        params(prompt="p", model="v5", duration=10, camera_movement="zoom_in", audio=True, lip_sync_voice="x")
    )
    assert len(problems) == 4
    assert any("makes videos of 5 or 8 seconds" in p for p in problems)
    assert any("`camera_movement`" in p for p in problems)
    assert any("`audio`" in p for p in problems)
    assert any("`lip_sync_voice` needs" in p for p in problems)

    shared = VIDU.validate(params(prompt="p" * 2001, duration=0, resolution="8k", bogus=1))
    assert len(shared) == 4

    # A bad value and a rule broken by the good ones are both reported...
    mixed = PIXVERSE.validate(params(prompt="p", quality="4k", model="v5", audio=True))
    assert mixed == [
        "`quality` must be one of 360p, 540p, 720p, 1080p (you gave 4k).",
        "PixVerse v5 does not take `audio`; leave it out or choose model v5.5, v5.6, v6 or c1.",
    ]
    # ...but rules that hinge on an invalid model stay quiet rather than guess.
    assert PIXVERSE.validate(params(prompt="p", model="v9", audio=True)) == [
        "`model` must be one of v3.5, v4, v4.5, v5, v5.5, v5.6, v6, c1 (you gave v9)."
    ]


def test_every_pixverse_model_has_its_durations() -> None:
    for model in PIXVERSE.option("model").choices:
        assert model in PIXVERSE_DURATIONS
        assert PIXVERSE.validate(params(prompt="p", model=model, duration=PIXVERSE_DURATIONS[str(model)][0])) == []


def test_defaults_are_filled_for_rules_and_requests() -> None:
    assert PIXVERSE.resolve({"prompt": "p"}) == {"prompt": "p", "model": "v5", "duration": 5, "quality": "720p"}
    assert VIDU.resolve({"prompt": "p"}) == {"prompt": "p", "model": "viduq2", "duration": 5}
    assert HIDREAM.resolve({})["motion_strength"] == 9.0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (params(model="viduq3-pro"), True),
        (params(model="viduq3-turbo", off_peak=True), False),
        (params(model="viduq2"), False),
        (params(model="viduq2", audio=True), True),
        (params(model="viduq3-pro", audio=False), False),
    ],
)
def test_vidu_audio_defaults_by_model(values: dict[str, Any], expected: bool) -> None:
    assert audio_on(values) is expected


def test_the_readme_documents_every_option() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for caps in (HIDREAM, STYLIZE, PIXVERSE, VIDU):
        section = readme[readme.index(f"### `{caps.command}`") :]
        section = section[: section.index("\n### ", 1)]
        for spec in caps.options:
            assert f"| `{spec.name}`" in section, (caps.command, spec.name)
            assert spec.description in section


@pytest.mark.parametrize("caps", [HIDREAM, STYLIZE, PIXVERSE, VIDU])
def test_every_choice_list_fits_a_slash_command(caps: Capabilities) -> None:
    for spec in caps.options:
        assert len(spec.choices) <= 25, spec.name
        assert len(spec.description) <= 100, spec.name


def test_every_vidu_model_has_its_durations_and_resolutions() -> None:
    models = VIDU.option("model").choices
    assert set(models) >= {"viduq2-pro", "viduq2-turbo", "viduq2-pro-fast", "viduq1-classic"}
    for model in models:
        shortest, longest = VIDU_DURATIONS[str(model)]
        for resolution in VIDU_RESOLUTIONS[str(model)]:
            for duration in (shortest, longest):
                assert VIDU.validate(params(prompt="p", model=model, duration=duration, resolution=resolution)) == []

"""providers.media: images and videos checked and prepared for the providers, or refused in one sentence."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import random
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms

from bot.jobs.preparation import PreparationPool
from providers.media import (
    MAX_PIXELS,
    ImageFormat,
    ImageLimits,
    MediaRejected,
    PreparedImage,
    VideoLimits,
    format_size,
    prepare_image,
    prepare_video,
    sniff_image_format,
)

MB = 1024 * 1024
WEB = frozenset({ImageFormat.PNG, ImageFormat.JPEG, ImageFormat.WEBP})
LOOSE = ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=4096)
VIDU_LIKE = ImageLimits(formats=WEB, max_bytes=10 * MB, max_side=8000, min_aspect=1 / 4, max_aspect=4)
RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
ACTIONS = ("attach", "crop", "export", "upload", "trim", "re-save")


# --- helpers ----------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def picture(width: int = 64, height: int = 48) -> Image.Image:
    """An RGB picture with varied content, quick to make at any size."""
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.NEAREST)
    return Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ramp.point(lambda v: 255 - v)))


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (width, height), BLUE)
    img.paste(RED, (0, 0, width // 2, height))
    return img


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    return Image.frombytes(mode, (width, height), os.urandom(width * height * len(mode)))


def close(actual: object, expected: tuple[int, ...], tolerance: int = 12) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def rgb_at(img: Image.Image, x: int, y: int) -> object:
    return img.convert("RGB").getpixel((x, y))


def assert_one_sentence(message: str) -> None:
    assert message[0].isupper()
    assert message.endswith(".")
    assert not any(stop in message[:-1] for stop in (". ", "! ", "? ", "\n"))
    assert any(action in message for action in ACTIONS), message


def rejected(data: bytes, limits: ImageLimits = LOOSE) -> str:
    with pytest.raises(MediaRejected) as caught:
        prepare_image(data, limits)
    message = str(caught.value)
    assert_one_sentence(message)
    return message


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but carries almost no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def png_bilevel(width: int, height: int) -> bytes:
    """A complete black-and-white PNG with striped rows: real pixels, yet cheap to make at any size."""
    compressor = zlib.compressobj(1)
    row = b"\x00" + b"\xf0" * ((width + 7) // 8)
    rows = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def pillow_allocations() -> tuple[int, int]:
    """Images Pillow has created and memory blocks it has allocated so far, from its own counters."""
    stats = Image.core.get_stats()
    return stats["new_count"], stats["allocated_blocks"]


def with_orientation(img: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return encode(img, fmt, exif=exif)


@pytest.fixture(scope="module")
def photo_6000x4000() -> bytes:
    return encode(picture(6000, 4000), "JPEG", quality=90)


# --- sniffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pillow_format", "expected"),
    [
        ("PNG", ImageFormat.PNG),
        ("JPEG", ImageFormat.JPEG),
        ("WEBP", ImageFormat.WEBP),
        ("GIF", ImageFormat.GIF),
        ("BMP", ImageFormat.BMP),
        ("TIFF", ImageFormat.TIFF),
    ],
)
def test_sniff_by_content(pillow_format: str, expected: ImageFormat) -> None:
    assert sniff_image_format(encode(picture(), pillow_format)) is expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"hello", id="text"),
        pytest.param(b"BMW owners club newsletter, issue 12", id="text-starting-with-BM"),
        pytest.param(b"\xff\xd8", id="two-bytes-of-jpeg"),
        pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", id="wav"),
        pytest.param(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", id="mp4"),
    ],
)
def test_sniff_rejects_non_images(data: bytes) -> None:
    assert sniff_image_format(data) is None


@pytest.mark.parametrize(
    ("fmt", "mime_type", "extension"),
    [
        (ImageFormat.PNG, "image/png", "png"),
        (ImageFormat.JPEG, "image/jpeg", "jpg"),
        (ImageFormat.WEBP, "image/webp", "webp"),
        (ImageFormat.GIF, "image/gif", "gif"),
        (ImageFormat.BMP, "image/bmp", "bmp"),
        (ImageFormat.TIFF, "image/tiff", "tiff"),
    ],
)
def test_format_names(fmt: ImageFormat, mime_type: str, extension: str) -> None:
    prepared = PreparedImage(data=b"x", format=fmt, width=1, height=1)
    assert (prepared.mime_type, prepared.extension) == (mime_type, extension)


# --- images that pass untouched ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("img", "pillow_format", "expected"),
    [
        pytest.param(picture(320, 200), "PNG", ImageFormat.PNG, id="png"),
        pytest.param(picture(320, 200), "JPEG", ImageFormat.JPEG, id="jpeg"),
        pytest.param(picture(320, 200), "WEBP", ImageFormat.WEBP, id="webp"),
        pytest.param(picture(320, 200).convert("L"), "JPEG", ImageFormat.JPEG, id="grey-jpeg"),
        pytest.param(picture(320, 200).convert("1"), "PNG", ImageFormat.PNG, id="bilevel-png"),
        pytest.param(picture(320, 200).convert("P"), "PNG", ImageFormat.PNG, id="palette-png"),
    ],
)
def test_acceptable_image_comes_back_byte_identical(
    img: Image.Image, pillow_format: str, expected: ImageFormat
) -> None:
    data = encode(img, pillow_format)
    prepared = prepare_image(data, LOOSE)
    assert prepared.data == data
    assert (prepared.format, prepared.width, prepared.height) == (expected, 320, 200)


def test_orientation_1_is_left_alone() -> None:
    data = with_orientation(halves(400, 200), 1)
    assert prepare_image(data, LOOSE).data == data


def test_nonsense_orientation_is_ignored() -> None:
    data = with_orientation(halves(400, 200), 9)
    prepared = prepare_image(data, LOOSE)
    assert prepared.data == data
    assert (prepared.width, prepared.height) == (400, 200)


def test_jpeg_named_png_is_still_jpeg() -> None:
    # The module never sees file names; whatever the upload was called, the bytes decide.
    data = encode(picture(), "JPEG")
    prepared = prepare_image(data, LOOSE)
    assert prepared.format is ImageFormat.JPEG
    assert prepared.mime_type == "image/jpeg"


def test_base64_and_data_uri_round_trip() -> None:
    data = encode(picture(), "PNG")
    prepared = prepare_image(data, LOOSE)
    assert base64.b64decode(prepared.base64(), validate=True) == data
    prefix, _, payload = prepared.data_uri().partition(",")
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(payload, validate=True) == data


def test_repr_leaves_the_bytes_out() -> None:
    prepared = prepare_image(encode(picture(), "PNG"), LOOSE)
    assert "data=" not in repr(prepared)
    assert "PNG" in repr(prepared)


# --- images that are re-encoded ---------------------------------------------------------------


@pytest.mark.parametrize("pillow_format", ["GIF", "BMP", "TIFF"])
def test_formats_no_provider_takes_become_jpeg(pillow_format: str) -> None:
    prepared = prepare_image(encode(halves(120, 80), pillow_format), LOOSE)
    out = decode(prepared.data)
    assert prepared.format is ImageFormat.JPEG
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (120, 80))
    assert close(rgb_at(out, 10, 40), RED)


@pytest.mark.parametrize(
    ("pillow_format", "params"),
    [
        pytest.param("GIF", {"loop": 0}, id="gif"),
        pytest.param("WEBP", {"loop": 0, "lossless": True}, id="webp"),
        pytest.param("PNG", {}, id="apng"),
    ],
)
def test_animation_keeps_its_first_frame(pillow_format: str, params: dict[str, object]) -> None:
    first, second = Image.new("RGB", (90, 60), RED), Image.new("RGB", (90, 60), BLUE)
    data = encode(first, pillow_format, save_all=True, append_images=[second], duration=100, **params)
    assert getattr(decode(data), "n_frames", 1) == 2
    prepared = prepare_image(data, LOOSE)
    out = decode(prepared.data)
    assert prepared.format is ImageFormat.JPEG
    assert getattr(out, "n_frames", 1) == 1
    assert out.size == (90, 60)
    assert close(rgb_at(out, 45, 30), RED)


def test_photo_is_downscaled_to_max_side(photo_6000x4000: bytes) -> None:
    limits = ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=4000)
    prepared = prepare_image(photo_6000x4000, limits)
    out = decode(prepared.data)
    assert (prepared.format, prepared.width, prepared.height) == (ImageFormat.JPEG, 4000, 2667)
    assert (out.format, out.size) == ("JPEG", (4000, 2667))


def test_photo_downscaled_far_uses_a_reduced_decode(photo_6000x4000: bytes) -> None:
    limits = ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=1000)
    prepared = prepare_image(photo_6000x4000, limits)
    assert decode(prepared.data).size == (1000, 667)


def test_portrait_is_downscaled_by_its_longest_side() -> None:
    limits = ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=100)
    prepared = prepare_image(encode(picture(150, 600), "PNG"), limits)
    assert (prepared.width, prepared.height) == (25, 100)


@pytest.mark.parametrize(
    ("pillow_format", "params", "divisor"),
    [("JPEG", {"quality": 100}, 2), ("JPEG", {"quality": 100}, 5), ("PNG", {}, 3)],
)
def test_small_byte_limit_forces_reencoding(pillow_format: str, params: dict[str, object], divisor: int) -> None:
    grainy = Image.blend(picture(1600, 1200), Image.effect_noise((1600, 1200), 16).convert("RGB"), 0.3)
    data = encode(grainy, pillow_format, **params)
    limits = ImageLimits(formats=WEB, max_bytes=len(data) // divisor, max_side=4096)
    prepared = prepare_image(data, limits)
    assert len(prepared.data) <= limits.max_bytes
    assert prepared.format is ImageFormat.JPEG
    # Lowering the quality is enough here; the picture keeps its size.
    assert decode(prepared.data).size == (prepared.width, prepared.height) == (1600, 1200)


def test_large_noisy_png_is_brought_under_the_byte_limit() -> None:
    data = encode(noise(1200, 1200), "PNG")
    assert len(data) > 4 * MB
    limits = ImageLimits(formats=WEB, max_bytes=1 * MB, max_side=4096)
    prepared = prepare_image(data, limits)
    out = decode(prepared.data)
    assert len(prepared.data) <= 1 * MB
    assert out.format == "JPEG"
    assert out.size == (prepared.width, prepared.height)
    assert 256 <= max(out.size) <= 1200


def test_noisy_transparent_png_shrinks_as_png() -> None:
    img = noise(900, 900, "RGBA")
    limits = ImageLimits(formats=WEB, max_bytes=512 * 1024, max_side=4096)
    prepared = prepare_image(encode(img, "PNG"), limits)
    out = decode(prepared.data)
    assert len(prepared.data) <= limits.max_bytes
    assert (out.format, out.mode) == ("PNG", "RGBA")
    assert 256 <= max(out.size) < 900
    assert out.size[0] == out.size[1]


def test_detail_that_cannot_fit_is_refused() -> None:
    limits = ImageLimits(formats=WEB, max_bytes=2000, max_side=4096)
    message = rejected(encode(noise(600, 600), "PNG"), limits)
    assert "2 KB" in message


# --- colour modes -----------------------------------------------------------------------------


def transparent_corner(mode: str) -> Image.Image:
    """Red, with a fully transparent top-left quarter."""
    img = Image.new("RGBA", (80, 60), (*RED, 255))
    img.paste((0, 0, 0, 0), (0, 0, 40, 30))
    if mode == "LA":
        return img.convert("LA")
    if mode == "P":
        return img.convert("RGB").quantize(colors=4)
    return img


def shrink_to(side: int) -> ImageLimits:
    return ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=side)


def test_rgba_with_transparency_stays_png_with_alpha() -> None:
    prepared = prepare_image(encode(transparent_corner("RGBA"), "PNG"), shrink_to(40))
    out = decode(prepared.data)
    assert (prepared.format, out.mode, out.size) == (ImageFormat.PNG, "RGBA", (40, 30))
    assert out.getpixel((2, 2))[3] == 0
    assert close(out.getpixel((37, 27)), (*RED, 255))


def test_la_becomes_rgba_png() -> None:
    prepared = prepare_image(encode(transparent_corner("LA"), "PNG"), shrink_to(40))
    out = decode(prepared.data)
    assert (out.format, out.mode) == ("PNG", "RGBA")
    assert out.getpixel((2, 2))[3] == 0


def test_palette_with_transparency_becomes_rgba_png() -> None:
    img = transparent_corner("P")
    img.info["transparency"] = img.getpixel((0, 0))
    data = encode(img, "PNG")
    assert decode(data).mode == "P"
    prepared = prepare_image(data, shrink_to(40))
    out = decode(prepared.data)
    assert (out.format, out.mode) == ("PNG", "RGBA")
    assert out.getpixel((2, 2))[3] == 0
    assert close(out.getpixel((37, 27)), (*RED, 255))


def test_rgb_colour_key_counts_as_transparency() -> None:
    img = transparent_corner("RGBA").convert("RGB")
    data = encode(img, "PNG", transparency=(0, 0, 0))
    prepared = prepare_image(data, shrink_to(40))
    out = decode(prepared.data)
    assert (out.format, out.mode) == ("PNG", "RGBA")
    assert out.getpixel((2, 2))[3] == 0


def test_opaque_alpha_channel_is_treated_as_a_photo() -> None:
    prepared = prepare_image(encode(picture(80, 60).convert("RGBA"), "PNG"), shrink_to(40))
    assert prepared.format is ImageFormat.JPEG
    assert decode(prepared.data).mode == "RGB"


def test_transparency_is_flattened_on_white_when_only_jpeg_is_taken() -> None:
    limits = ImageLimits(formats=frozenset({ImageFormat.JPEG}), max_bytes=20 * MB, max_side=4096)
    prepared = prepare_image(encode(transparent_corner("RGBA"), "PNG"), limits)
    out = decode(prepared.data)
    assert (prepared.format, out.mode) == (ImageFormat.JPEG, "RGB")
    assert close(rgb_at(out, 5, 5), WHITE)
    assert close(rgb_at(out, 70, 50), RED)


def test_transparency_goes_to_webp_when_png_is_not_taken() -> None:
    limits = ImageLimits(formats=frozenset({ImageFormat.JPEG, ImageFormat.WEBP}), max_bytes=20 * MB, max_side=4096)
    prepared = prepare_image(encode(transparent_corner("RGBA"), "PNG"), limits)
    out = decode(prepared.data)
    assert (prepared.format, out.format, out.mode) == (ImageFormat.WEBP, "WEBP", "RGBA")
    assert out.getpixel((2, 2))[3] == 0


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        (frozenset({ImageFormat.WEBP}), ImageFormat.WEBP),
        (frozenset({ImageFormat.PNG}), ImageFormat.PNG),
        (frozenset({ImageFormat.PNG, ImageFormat.WEBP}), ImageFormat.WEBP),
    ],
)
def test_opaque_output_format_follows_what_is_taken(formats: frozenset[ImageFormat], expected: ImageFormat) -> None:
    limits = ImageLimits(formats=formats, max_bytes=20 * MB, max_side=4096)
    prepared = prepare_image(encode(picture(), "BMP"), limits)
    assert prepared.format is expected
    assert decode(prepared.data).format == expected.name


def test_cmyk_jpeg_is_reencoded_as_rgb() -> None:
    data = encode(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG", quality=95)
    assert decode(data).mode == "CMYK"
    prepared = prepare_image(data, LOOSE)
    out = decode(prepared.data)
    assert (prepared.format, out.mode, out.size) == (ImageFormat.JPEG, "RGB", (64, 48))
    assert close(out.getpixel((32, 24)), RED)


def test_16_bit_png_is_scaled_not_clipped_to_8_bits() -> None:
    data = encode(Image.new("I;16", (64, 48), 40000), "PNG")
    assert decode(data).mode == "I;16"
    prepared = prepare_image(data, LOOSE)
    out = decode(prepared.data)
    assert out.mode == "RGB"
    assert close(out.getpixel((32, 24)), (156, 156, 156), tolerance=3)


@pytest.mark.parametrize(
    ("mode", "dark", "light", "expected_light"),
    [
        pytest.param("F", 0.0, 1000.0, 255, id="float-stretched"),
        pytest.param("I", 0, 200, 200, id="int-in-range"),
        pytest.param("I", -5000, 70000, 255, id="int-stretched"),
    ],
)
def test_high_depth_tiff_becomes_8_bit(mode: str, dark: float, light: float, expected_light: int) -> None:
    img = Image.new(mode, (64, 48), dark)
    img.paste(light, (32, 0, 64, 48))
    prepared = prepare_image(encode(img, "TIFF"), LOOSE)
    out = decode(prepared.data)
    assert (out.format, out.mode) == ("JPEG", "RGB")
    assert close(out.getpixel((5, 24)), (0, 0, 0), tolerance=3)
    assert close(out.getpixel((60, 24)), (expected_light,) * 3, tolerance=3)


def test_reencoded_output_carries_no_metadata() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Phone"
    exif[ExifTags.Base.Orientation] = 1
    data = encode(picture(400, 300), "JPEG", exif=exif, comment=b"taken at home")
    assert decode(data).getexif()
    out = decode(prepare_image(data, shrink_to(200)).data)
    assert not out.getexif()
    assert not {"exif", "comment", "icc_profile", "xmp"} & set(out.info)


def test_colour_profile_is_applied_then_dropped() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(halves(120, 80), "PNG", icc_profile=srgb)
    assert decode(data).info.get("icc_profile")
    prepared = prepare_image(data, shrink_to(60))
    out = decode(prepared.data)
    assert "icc_profile" not in out.info
    assert close(rgb_at(out, 5, 20), RED)


# --- EXIF orientation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size", "red_at"),
    [
        pytest.param(2, (400, 200), (390, 100), id="mirrored"),
        pytest.param(3, (400, 200), (390, 100), id="upside-down"),
        pytest.param(6, (200, 400), (100, 10), id="rotate-90-cw"),
        pytest.param(8, (200, 400), (100, 390), id="rotate-90-ccw"),
    ],
)
def test_exif_rotation_is_baked_in(orientation: int, size: tuple[int, int], red_at: tuple[int, int]) -> None:
    prepared = prepare_image(with_orientation(halves(400, 200), orientation), LOOSE)
    out = decode(prepared.data)
    assert (prepared.format, prepared.width, prepared.height) == (ImageFormat.JPEG, *size)
    assert out.size == size
    assert close(rgb_at(out, *red_at), RED, tolerance=30)
    assert ExifTags.Base.Orientation not in out.getexif()
    assert "exif" not in out.info


def test_exif_rotation_in_png_is_honoured_too() -> None:
    prepared = prepare_image(with_orientation(halves(400, 200), 6, "PNG"), LOOSE)
    assert (prepared.width, prepared.height) == (200, 400)


def test_aspect_is_judged_upright() -> None:
    limits = ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=8000, max_aspect=4)
    message = rejected(with_orientation(picture(1000, 5000), 6), limits)
    assert "5:1" in message


# --- shape ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "found", "where"),
    [
        pytest.param((5000, 1000), "5:1", "sides", id="wide"),
        pytest.param((5200, 1000), "5.2:1", "sides", id="wide-fraction"),
        pytest.param((1000, 5000), "1:5", "top and bottom", id="tall"),
        pytest.param((4000, 1000), "4:1", "sides", id="exactly-the-limit"),
    ],
)
def test_extreme_aspect_is_refused(size: tuple[int, int], found: str, where: str) -> None:
    message = rejected(encode(Image.new("RGB", size, "teal"), "PNG"), VIDU_LIKE)
    assert f"is {found} " in message
    assert "strictly between 1:4 and 4:1" in message
    assert f"crop its {where}" in message


@pytest.mark.parametrize("size", [(3900, 1000), (1000, 3900), (1000, 1000)])
def test_aspect_inside_the_range_is_accepted(size: tuple[int, int]) -> None:
    data = encode(Image.new("RGB", size, "teal"), "PNG")
    assert prepare_image(data, VIDU_LIKE).data == data


def test_one_sided_aspect_limit_names_only_that_side() -> None:
    limits = ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=8000, max_aspect=3)
    message = rejected(encode(Image.new("RGB", (400, 100), "teal"), "PNG"), limits)
    assert "must be narrower than 3:1" in message


def test_too_small_is_refused() -> None:
    limits = ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=4096, min_side=128)
    message = rejected(encode(picture(200, 50), "PNG"), limits)
    assert "200×50" in message
    assert "128" in message


@pytest.mark.parametrize(
    ("width", "height", "megapixels"),
    [(20000, 20000, "400"), (10000, 6000, "60"), (7000, 7000, "49"), (6325, 6325, "40.01"), (2**31 - 1, 1, "2147.5")],
)
def test_too_many_pixels_is_refused_before_decoding(width: int, height: int, megapixels: str) -> None:
    # pytest turns warnings into errors, so this also proves Pillow's bomb warning never fires.
    message = rejected(png_header_only(width, height))
    assert f"{width}×{height} pixels ({megapixels} megapixels)" in message
    assert f"{MAX_PIXELS // 1_000_000}-megapixel limit" in message


def test_the_pixel_budget_is_40_megapixels() -> None:
    assert MAX_PIXELS == 40_000_000


def test_a_complete_7000x7000_png_is_refused_without_decoding_a_pixel() -> None:
    data = png_bilevel(7000, 7000)
    assert len(data) < 1_000_000
    before = pillow_allocations()
    message = rejected(data)
    assert pillow_allocations() == before
    assert message == (
        "That image is 7000×7000 pixels (49 megapixels), over the 40-megapixel limit; attach a smaller version."
    )


def test_an_image_of_exactly_the_budget_is_not_refused_for_its_size() -> None:
    # A header of exactly 40 megapixels with no pixels behind it: refused as damaged, so it got past the budget.
    message = rejected(png_header_only(8000, 5000))
    assert "damaged or incomplete" in message


@pytest.fixture(scope="module")
def rotated_halves_6000x4000() -> bytes:
    """Stored 6000x4000, left half red, with EXIF orientation 6: shown 4000x6000 with red on top."""
    return with_orientation(halves(6000, 4000), 6)


@pytest.mark.parametrize(
    ("max_side", "size"),
    [
        pytest.param(1000, (667, 1000), id="decoded-at-a-quarter"),
        pytest.param(2048, (1365, 2048), id="decoded-at-half"),
        pytest.param(4000, (2667, 4000), id="decoded-in-full"),
    ],
)
def test_a_large_rotated_photo_comes_out_upright_at_the_right_size(
    rotated_halves_6000x4000: bytes, max_side: int, size: tuple[int, int]
) -> None:
    prepared = prepare_image(rotated_halves_6000x4000, ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=max_side))
    out = decode(prepared.data)
    assert (prepared.width, prepared.height) == size
    assert out.size == size
    width, height = size
    assert close(rgb_at(out, width // 2, height // 10), RED, tolerance=30)
    assert close(rgb_at(out, width // 2, height - height // 10), BLUE, tolerance=30)
    assert close(rgb_at(out, width // 10, height // 2 - 20), RED, tolerance=30)
    assert close(rgb_at(out, width - width // 10, height // 2 + 20), BLUE, tolerance=30)


PEAK_GROWTH_SCRIPT = textwrap.dedent(
    """
    import sys
    from providers.media import ImageFormat, ImageLimits, prepare_image

    def peak_kib():
        # VmHWM belongs to this process alone; ru_maxrss would carry over the parent's peak across exec.
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    data = open(sys.argv[1], "rb").read()
    formats = frozenset({ImageFormat.PNG, ImageFormat.JPEG, ImageFormat.WEBP})
    limits = ImageLimits(formats=formats, max_bytes=20 * 1024 * 1024, max_side=int(sys.argv[2]))
    before = peak_kib()
    prepared = prepare_image(data, limits)
    print(prepared.width, prepared.height, peak_kib() - before)
    """
)


def prepared_in_a_fresh_process(data: bytes, max_side: int, folder: Path) -> tuple[int, int, float]:
    """Width and height of the prepared image, and the growth of the peak memory (MiB) preparing it took."""
    path = folder / "input"
    path.write_bytes(data)
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", PEAK_GROWTH_SCRIPT, str(path), str(max_side)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    width, height, growth_kib = map(int, done.stdout.split())
    return width, height, growth_kib / 1024


# Pillow keeps RGB at four bytes a pixel.
FULL_6000X4000_MIB = 6000 * 4000 * 4 / 2**20


def test_a_large_photo_decodes_at_a_reduced_scale(photo_6000x4000: bytes, tmp_path: Path) -> None:
    width, height, growth = prepared_in_a_fresh_process(photo_6000x4000, 1000, tmp_path)
    assert (width, height) == (1000, 667)
    assert growth < FULL_6000X4000_MIB / 4


def test_a_rotated_photo_is_never_held_twice_at_full_size(rotated_halves_6000x4000: bytes, tmp_path: Path) -> None:
    # The decoded picture and the 4000x2667 result may coexist, but no second full-size copy.
    width, height, growth = prepared_in_a_fresh_process(rotated_halves_6000x4000, 4000, tmp_path)
    assert (width, height) == (2667, 4000)
    assert growth < FULL_6000X4000_MIB + 4000 * 2667 * 4 / 2**20 + 20


# --- the preparation pool ---------------------------------------------------------------------


async def wait_until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.001)


async def test_the_pool_runs_no_more_preparations_at_once_than_its_workers() -> None:
    pool = PreparationPool(workers=2)
    lock = threading.Lock()
    gate = threading.Semaphore(0)
    running = entered = most = 0

    def held(index: int) -> int:
        nonlocal running, entered, most
        with lock:
            running += 1
            entered += 1
            most = max(most, running)
        gate.acquire(timeout=30)
        with lock:
            running -= 1
        return index

    submissions = [asyncio.ensure_future(pool.run(held, index)) for index in range(7)]
    try:
        for released in range(7):
            # The pool takes the next submission as soon as a worker is free, so two are always in.
            await wait_until(lambda released=released: entered >= min(released + 2, 7))
            gate.release()
        assert await asyncio.gather(*submissions) == list(range(7))
    finally:
        for _ in range(7):
            gate.release()
        pool.close()
    assert most == 2


async def test_the_pool_prepares_a_burst_of_photos_while_the_loop_keeps_running(photo_6000x4000: bytes) -> None:
    pool = PreparationPool(workers=2)
    limits = ImageLimits(formats=WEB, max_bytes=20 * MB, max_side=1000)
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(ticking())
    try:
        results = await asyncio.gather(*(pool.run(prepare_image, photo_6000x4000, limits) for _ in range(5)))
    finally:
        ticker.cancel()
        pool.close()
    assert [(result.width, result.height) for result in results] == [(1000, 667)] * 5
    assert ticks > 5


async def test_a_closed_pool_takes_no_more_work() -> None:
    pool = PreparationPool(workers=1)
    assert await pool.run(max, 1, 2) == 2
    pool.close()
    with pytest.raises(RuntimeError):
        await pool.run(max, 1, 2)


def test_a_pool_needs_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        PreparationPool(workers=0)


# --- files that are not usable images ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"hello", "not an image", id="text"),
        pytest.param(b"hello", "not an image", id="text-called-photo.png"),
        pytest.param(b"BMW owners club newsletter, issue 12", "not an image", id="text-starting-with-BM"),
        pytest.param(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "video", id="mp4"),
        pytest.param(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC", id="heic"),
        pytest.param(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF", id="avif"),
    ],
)
def test_non_images_are_refused(data: bytes, expected: str) -> None:
    message = rejected(data)
    assert expected in message
    assert "PNG" in message or "JPEG" in message


def truncated(pillow_format: str) -> bytes:
    data = encode(picture(300, 200), pillow_format)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(truncated("PNG"), id="truncated-png"),
        pytest.param(truncated("JPEG"), id="truncated-jpeg"),
        pytest.param(truncated("WEBP"), id="truncated-webp"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-signature-only"),
        pytest.param(b"\xff\xd8\xff" + bytes(200), id="jpeg-magic-then-zeros"),
        pytest.param(png_header_only(64, 48), id="png-without-pixels"),
    ],
)
def test_damaged_files_are_refused(data: bytes) -> None:
    message = rejected(data)
    assert "damaged or incomplete" in message
    assert "re-export" in message


IMAGE_FORMATS = [
    "PNG",
    "JPEG",
    "WEBP",
    "GIF",
    "BMP",
    # Pillow warns about the broken tags it skips; in production that is only a log line.
    pytest.param("TIFF", marks=pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")),
]


@pytest.mark.parametrize("pillow_format", IMAGE_FORMATS)
def test_every_truncated_image_is_refused_cleanly(pillow_format: str) -> None:
    data = encode(halves(48, 32), pillow_format)
    for cut in range(len(data)):
        try:
            prepare_image(data[:cut], LOOSE)
        except MediaRejected as exc:
            assert_one_sentence(str(exc))


@pytest.mark.parametrize("pillow_format", IMAGE_FORMATS)
def test_corrupted_images_never_escape_as_other_errors(pillow_format: str) -> None:
    data = encode(halves(48, 32), pillow_format)
    rng = random.Random(pillow_format)
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            prepare_image(bytes(mutated), LOOSE)
        except MediaRejected as exc:
            assert_one_sentence(str(exc))


# --- limits and sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"formats": frozenset()},
        {"formats": frozenset({ImageFormat.GIF})},
        {"max_bytes": 0},
        {"max_side": 0},
        {"min_side": 0},
        {"min_side": 5000},
        {"min_aspect": 0.0},
        {"max_aspect": float("inf")},
        {"min_aspect": 2.0, "max_aspect": 0.5},
    ],
)
def test_nonsense_image_limits_are_a_programming_error(changes: dict[str, object]) -> None:
    params: dict[str, object] = {"formats": WEB, "max_bytes": MB, "max_side": 4096, **changes}
    with pytest.raises(ValueError, match="must"):
        ImageLimits(**params)


@pytest.mark.parametrize("changes", [{"max_bytes": 0}, {"max_seconds": 0.0}, {"max_seconds": float("nan")}])
def test_nonsense_video_limits_are_a_programming_error(changes: dict[str, object]) -> None:
    params: dict[str, object] = {"max_bytes": MB, **changes}
    with pytest.raises(ValueError, match="must"):
        VideoLimits(**params)


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KB"),
        (1536, "1.5 KB"),
        (MB - 1, "1 MB"),
        (int(12.4 * MB), "12.4 MB"),
        (20 * MB - 1, "20 MB"),
        (3 * 1024 * MB, "3 GB"),
    ],
)
def test_format_size(n_bytes: int, text: str) -> None:
    assert format_size(n_bytes) == text


def test_format_size_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_size(-1)


# --- video ------------------------------------------------------------------------------------


def box(kind: bytes, *children: bytes) -> bytes:
    payload = b"".join(children)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def box64(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


def ftyp(brand: bytes = b"isom") -> bytes:
    return box(b"ftyp", brand, struct.pack(">I", 512), brand, b"mp41")


def mvhd(timescale: int, duration: int, version: int = 0) -> bytes:
    if version == 1:
        times = struct.pack(">QQIQ", 0, 0, timescale, duration)
    else:
        times = struct.pack(">IIII", 0, 0, timescale, duration)
    # rate, volume, reserved, matrix, pre_defined, next_track_ID
    rest = struct.pack(">IH10x36s24xI", 0x00010000, 0x0100, bytes(36), 2)
    return box(b"mvhd", bytes([version, 0, 0, 0]), times, rest)


IDENTITY = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
ROTATE_90 = (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)


def tkhd(width: int, height: int, version: int = 0, matrix: tuple[int, ...] = IDENTITY) -> bytes:
    head = struct.pack(">QQIIQ", 0, 0, 1, 0, 0) if version == 1 else struct.pack(">IIIII", 0, 0, 1, 0, 0)
    rest = struct.pack(">8xHHH2x9iII", 0, 0, 0, *matrix, width << 16, height << 16)
    return box(b"tkhd", bytes([version, 0, 0, 3]), head, rest)


def hdlr(handler: bytes) -> bytes:
    return box(b"hdlr", bytes(8), handler, bytes(12), b"handler\x00")


def trak(handler: bytes = b"vide", header: bytes | None = None) -> bytes:
    return box(b"trak", header if header is not None else tkhd(1280, 720), box(b"mdia", hdlr(handler)))


def mp4(*, moov: bytes | None = None, mdat: bytes | None = None, before: bytes = b"") -> bytes:
    movie = moov if moov is not None else box(b"moov", mvhd(1000, 5000), trak())
    media = mdat if mdat is not None else box(b"mdat", bytes(64))
    return ftyp() + before + movie + media


VIDEO = VideoLimits(max_bytes=20 * MB, max_seconds=30)


def video_rejected(data: bytes, limits: VideoLimits = VIDEO) -> str:
    with pytest.raises(MediaRejected) as caught:
        prepare_video(data, limits)
    message = str(caught.value)
    assert_one_sentence(message)
    return message


@pytest.mark.parametrize(
    ("data", "duration", "size"),
    [
        pytest.param(mp4(), 5.0, (1280, 720), id="mvhd-v0"),
        pytest.param(
            mp4(moov=box(b"moov", mvhd(90000, 90000 * 25 // 2, version=1), trak(header=tkhd(1920, 1080, 1)))),
            12.5,
            (1920, 1080),
            id="mvhd-v1",
        ),
        pytest.param(
            mp4(moov=box(b"moov", mvhd(600, 1800), trak(header=tkhd(1920, 1080, matrix=ROTATE_90)))),
            3.0,
            (1080, 1920),
            id="phone-portrait",
        ),
        pytest.param(
            mp4(moov=box(b"moov", mvhd(1000, 4000), trak(b"soun", tkhd(0, 0)), trak(header=tkhd(640, 360)))),
            4.0,
            (640, 360),
            id="audio-track-first",
        ),
        pytest.param(mp4(mdat=box64(b"mdat", bytes(64))), 5.0, (1280, 720), id="64-bit-mdat"),
        pytest.param(mp4(mdat=struct.pack(">I4s", 0, b"mdat") + bytes(64)), 5.0, (1280, 720), id="mdat-to-end"),
        pytest.param(
            ftyp() + box(b"free") + box(b"mdat", bytes(64)) + box(b"moov", mvhd(1000, 5000), trak()),
            5.0,
            (1280, 720),
            id="moov-last",
        ),
        pytest.param(
            mp4(
                moov=box(b"moov", mvhd(1000, 0), box(b"mvex", box(b"mehd", bytes(4), struct.pack(">I", 7000))), trak())
            ),
            7.0,
            (1280, 720),
            id="fragmented",
        ),
        pytest.param(mp4(moov=box(b"moov", mvhd(1000, 2**32 - 1), trak())), None, (1280, 720), id="unknown-length"),
        pytest.param(mp4(moov=box(b"moov", mvhd(0, 5000), trak())), None, (1280, 720), id="zero-timescale"),
        pytest.param(
            ftyp(b"qt  ") + box(b"moov", mvhd(600, 600), trak()) + box(b"mdat"), 1.0, (1280, 720), id="quicktime"
        ),
    ],
)
def test_video_is_accepted(data: bytes, duration: float | None, size: tuple[int, int]) -> None:
    prepared = prepare_video(data, VIDEO)
    assert prepared.data == data
    assert prepared.duration_seconds == duration
    assert (prepared.width, prepared.height) == size


def test_prepared_video_encodes() -> None:
    data = mp4()
    prepared = prepare_video(data, VIDEO)
    assert prepared.mime_type == "video/mp4"
    assert base64.b64decode(prepared.base64(), validate=True) == data
    assert "data=" not in repr(prepared)


def mvhd_with_payload(payload: bytes) -> bytes:
    return mp4(moov=box(b"moov", box(b"mvhd", payload), trak()))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", "not an MP4", id="empty"),
        pytest.param(b"hello", "not an MP4", id="text"),
        pytest.param(encode(picture(), "PNG"), "picture, not a video", id="png"),
        pytest.param(encode(picture(), "JPEG"), "picture, not a video", id="jpeg"),
        pytest.param(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "picture, not a video", id="heic"),
        pytest.param(box(b"moov", mvhd(1000, 5000), trak()) + ftyp(), "not an MP4", id="moov-before-ftyp"),
        pytest.param(ftyp() + box(b"mdat", bytes(64)), "incomplete", id="no-moov"),
        pytest.param(ftyp() + box(b"moov", trak()), "incomplete", id="no-mvhd"),
        pytest.param(mp4()[:-10], "incomplete", id="mdat-cut-short"),
        pytest.param(mp4(mdat=struct.pack(">I4s", 10**6, b"mdat")), "incomplete", id="size-past-end"),
        pytest.param(mp4(mdat=struct.pack(">I4s", 4, b"mdat") + bytes(8)), "incomplete", id="size-under-8"),
        pytest.param(mp4(mdat=struct.pack(">I4sQ", 1, b"mdat", 12) + bytes(8)), "incomplete", id="size64-under-16"),
        pytest.param(mp4(mdat=struct.pack(">I4sI", 1, b"mdat", 0)), "incomplete", id="size64-cut-short"),
        pytest.param(mp4(mdat=struct.pack(">I4sQ", 1, b"mdat", 2**63)), "incomplete", id="size64-huge"),
        pytest.param(mp4() + b"\x00\x00\x00", "incomplete", id="trailing-bytes"),
        pytest.param(
            ftyp() + struct.pack(">I4s", 16, b"moov") + mvhd(1000, 5000), "incomplete", id="child-past-parent"
        ),
        pytest.param(mvhd_with_payload(bytes(10)), "incomplete", id="mvhd-too-short"),
        pytest.param(mvhd_with_payload(bytes([1]) + bytes(20)), "incomplete", id="mvhd-v1-too-short"),
        pytest.param(mvhd_with_payload(bytes([2]) + bytes(99)), "incomplete", id="mvhd-v2"),
        pytest.param(
            mp4(moov=box(b"moov", mvhd(1000, 5000), trak(header=box(b"tkhd", bytes(20))))),
            "incomplete",
            id="tkhd-too-short",
        ),
        pytest.param(mp4(moov=box(b"moov", mvhd(1000, 5000), trak(b"soun"))), "no video track", id="audio-only"),
    ],
)
def test_bad_video_is_refused(data: bytes, expected: str) -> None:
    assert expected in video_rejected(data)


def test_video_over_the_byte_limit_is_refused() -> None:
    data = mp4(mdat=box(b"mdat", bytes(3 * MB)))
    message = video_rejected(data, VideoLimits(max_bytes=2 * MB))
    assert "That video is 3 MB, over the limit of 2 MB" in message


def test_video_just_over_the_byte_limit_shows_enough_digits() -> None:
    data = mp4(mdat=box(b"mdat", bytes(2 * MB)))
    message = video_rejected(data, VideoLimits(max_bytes=2 * MB))
    # Both round to "2 MB", so the sentence falls back to exact counts rather than contradict itself.
    assert f"That video is {len(data):,} bytes, over the limit of {2 * MB:,} bytes" in message


@pytest.mark.parametrize(
    ("duration_ms", "found"),
    [(45_000, "45 seconds"), (30_040, "30.04 seconds")],
)
def test_video_over_max_seconds_is_refused(duration_ms: int, found: str) -> None:
    data = mp4(moov=box(b"moov", mvhd(1000, duration_ms), trak()))
    message = video_rejected(data)
    assert f"That video is {found} long, over the 30-second limit" in message


def test_video_exactly_at_max_seconds_is_accepted() -> None:
    data = mp4(moov=box(b"moov", mvhd(1000, 30_000), trak()))
    assert prepare_video(data, VIDEO).duration_seconds == 30.0


def test_every_truncated_video_is_refused_cleanly() -> None:
    # moov last, so that every prefix loses part of it.
    data = ftyp() + box(b"mdat", bytes(16)) + box(b"moov", mvhd(1000, 5000, 1), trak(header=tkhd(640, 360, 1)))
    for cut in range(len(data)):
        video_rejected(data[:cut])


def test_corrupted_videos_never_escape_as_other_errors() -> None:
    data = bytearray(mp4(moov=box(b"moov", mvhd(1000, 5000, 1), trak(header=tkhd(640, 360, 1)))))
    rng = random.Random(1234)
    for _ in range(2000):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            prepare_video(bytes(mutated), VIDEO)
        except MediaRejected as exc:
            assert_one_sentence(str(exc))

"""Turn the bytes a user uploaded into an image or video a provider accepts, or refuse in one sentence."""

from __future__ import annotations

import base64
import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Final

from PIL import (
    BmpImagePlugin,
    ExifTags,
    GifImagePlugin,
    Image,
    ImageCms,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

__all__ = [
    "MAX_PIXELS",
    "ImageFormat",
    "ImageLimits",
    "MediaRejected",
    "PreparedImage",
    "PreparedVideo",
    "VideoLimits",
    "format_size",
    "prepare_image",
    "prepare_video",
    "sniff_image_format",
]

MAX_PIXELS: Final = 40_000_000
"""Images with more pixels than this are refused from their header, before a pixel is decoded: more than a
phone camera's default photo and ten times what any provider takes, yet decoding one costs 160 MB."""

_JPEG_QUALITY: Final = 90
_FALLBACK_QUALITIES: Final = (85, 75, 60)
# Rough size of a JPEG/WebP at each quality relative to quality 90, used to skip steps that cannot fit.
_QUALITY_SIZE_RATIO: Final = {85: 0.8, 75: 0.6, 60: 0.45}
_SHRINK_STEP: Final = 0.8
_MIN_LONG_SIDE: Final = 256
# Modes every decoder shows correctly; CMYK, 16-bit and the like are re-encoded even when they fit.
_PLAIN_MODES: Final = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
_SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ROTATED_ORIENTATIONS: Final = frozenset({5, 6, 7, 8})
# The transposition that shows a picture upright, by EXIF orientation (the EXIF 2.3 table).
_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Output rows resampled at once: keeps the resampler's intermediate image a band high, not picture high.
_RESIZE_BAND_PIXELS: Final = 250_000


class MediaRejected(ValueError):
    """The file cannot be used; str(exc) is one sentence telling the user what to change."""


class ImageFormat(StrEnum):
    """An image container, identified by its magic bytes."""

    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"
    GIF = "gif"
    BMP = "bmp"
    TIFF = "tiff"

    @property
    def mime_type(self) -> str:
        return f"image/{self.value}"

    @property
    def extension(self) -> str:
        return "jpg" if self is ImageFormat.JPEG else self.value


_ENCODABLE: Final = frozenset({ImageFormat.PNG, ImageFormat.JPEG, ImageFormat.WEBP})

# Plugin classes are built directly instead of via Image.open: Image.open runs Pillow's own
# decompression-bomb check, which warns (or raises without the size) before we can refuse politely.
_OPENERS: Final[dict[ImageFormat, Callable[[IO[bytes]], ImageFile.ImageFile]]] = {
    ImageFormat.PNG: PngImagePlugin.PngImageFile,
    ImageFormat.JPEG: JpegImagePlugin.JpegImageFile,
    ImageFormat.WEBP: WebPImagePlugin.WebPImageFile,
    ImageFormat.GIF: GifImagePlugin.GifImageFile,
    ImageFormat.BMP: BmpImagePlugin.BmpImageFile,
    ImageFormat.TIFF: TiffImagePlugin.TiffImageFile,
}

# What Pillow raises on malformed input; all of it means "this file cannot be read".
_DECODE_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

_BMP_HEADER_SIZES: Final = frozenset({12, 40, 52, 56, 64, 108, 124})
_HEIF_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
# Major brands of still pictures in an ISO container, which has ftyp like a video but no moov.
_STILL_BRANDS: Final = frozenset({b"heic", b"heix", b"mif1", b"avif"})

_ACCEPTED_PICTURES: Final = "attach a PNG, JPEG or WebP picture"
_NOT_IMAGE: Final = f"That file is not an image; {_ACCEPTED_PICTURES}."
_EMPTY_IMAGE: Final = f"That file is empty; {_ACCEPTED_PICTURES}."
_VIDEO_NOT_IMAGE: Final = f"That file is a video, not a picture; {_ACCEPTED_PICTURES}."
_DAMAGED_IMAGE: Final = "That image looks damaged or incomplete; re-export it or upload it again."
_ODD_COLOURS: Final = (
    "That image uses a colour format I cannot convert; re-save it as an ordinary PNG or JPEG and attach it again."
)
_NOT_MP4: Final = "That file is not an MP4 video; export it as MP4 and attach it again."
_PICTURE_NOT_VIDEO: Final = "That file is a picture, not a video; attach an MP4 video instead."
_BROKEN_MP4: Final = "That video is incomplete or not a valid MP4; re-export it as MP4 or upload it again."
_NO_VIDEO_TRACK: Final = "That file has no video track; attach an MP4 that contains video."


@dataclass(frozen=True)
class ImageLimits:
    """What one provider accepts as an input image."""

    formats: frozenset[ImageFormat]
    max_bytes: int
    max_side: int
    min_side: int = 1
    min_aspect: float | None = None
    max_aspect: float | None = None

    def __post_init__(self) -> None:
        if not self.formats & _ENCODABLE:
            raise ValueError("formats must include PNG, JPEG or WebP so an image can be re-encoded")
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if not 1 <= self.min_side <= self.max_side:
            raise ValueError("min_side must be between 1 and max_side")
        for bound in (self.min_aspect, self.max_aspect):
            if bound is not None and not (math.isfinite(bound) and bound > 0):
                raise ValueError("aspect bounds must be positive and finite")
        if self.min_aspect is not None and self.max_aspect is not None and self.min_aspect >= self.max_aspect:
            raise ValueError("min_aspect must be less than max_aspect")


@dataclass(frozen=True)
class PreparedImage:
    """Image bytes a provider accepts, with their format and upright size."""

    data: bytes = field(repr=False)
    format: ImageFormat
    width: int
    height: int

    @property
    def mime_type(self) -> str:
        return self.format.mime_type

    @property
    def extension(self) -> str:
        return self.format.extension

    def base64(self) -> str:
        """Plain base64 of the bytes."""
        return base64.b64encode(self.data).decode("ascii")

    def data_uri(self) -> str:
        """The bytes as a ``data:`` URI."""
        return f"data:{self.mime_type};base64,{self.base64()}"


@dataclass(frozen=True)
class VideoLimits:
    """What one provider accepts as an input video."""

    max_bytes: int
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError("max_seconds must be positive and finite")


@dataclass(frozen=True)
class PreparedVideo:
    """A checked MP4 with what its header says about length and size."""

    data: bytes = field(repr=False)
    duration_seconds: float | None
    width: int | None
    height: int | None

    @property
    def mime_type(self) -> str:
        return "video/mp4"

    def base64(self) -> str:
        """Plain base64 of the bytes."""
        return base64.b64encode(self.data).decode("ascii")


def format_size(n_bytes: int) -> str:
    """A byte count for people: ``"12.4 MB"``, where MB is 1024² bytes as in Discord and the provider limits."""
    if n_bytes < 0:
        raise ValueError("a size cannot be negative")
    return _size_text(n_bytes, 1)


def sniff_image_format(data: bytes) -> ImageFormat | None:
    """The image format from the magic bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return ImageFormat.GIF
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return ImageFormat.TIFF
    # "BM" alone is too weak: plenty of text starts with it, so the DIB header size must match too.
    if data.startswith(b"BM") and len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return ImageFormat.BMP
    return None


def prepare_image(data: bytes, limits: ImageLimits) -> PreparedImage:
    """Check an uploaded image and, when needed, re-encode it to fit ``limits``."""
    fmt = sniff_image_format(data)
    if fmt is None:
        raise MediaRejected(_unknown_file_message(data))
    try:
        img = _OPENERS[fmt](io.BytesIO(data))
    except _DECODE_ERRORS as exc:
        raise MediaRejected(_DAMAGED_IMAGE) from exc

    stored_width, stored_height = img.size
    if stored_width * stored_height > MAX_PIXELS:
        raise MediaRejected(_too_many_pixels_message(stored_width, stored_height))

    # The size to resample to, in the stored orientation: the long side is the same either way up.
    target = _fit_long_side((stored_width, stored_height), limits.max_side)
    try:
        animated = getattr(img, "n_frames", 1) > 1
        # JPEG decodes straight to 1/2, 1/4 or 1/8 of its size (the smallest still at least the target),
        # far cheaper in time and memory than decoding in full and resampling.
        if fmt is ImageFormat.JPEG and target != img.size:
            img.draft(None, target)
        img.load()
    except _DECODE_ERRORS as exc:
        raise MediaRejected(_DAMAGED_IMAGE) from exc

    orientation = _exif_orientation(img)
    if orientation in _ROTATED_ORIENTATIONS:
        width, height = stored_height, stored_width
    else:
        width, height = stored_width, stored_height
    _check_shape(width, height, limits)

    if (
        fmt in limits.formats
        and len(data) <= limits.max_bytes
        and max(width, height) <= limits.max_side
        and not animated
        and orientation == 1
        and img.mode in _PLAIN_MODES
    ):
        return PreparedImage(data=data, format=fmt, width=width, height=height)
    return _reencode(img, orientation, target, limits)


def prepare_video(data: bytes, limits: VideoLimits) -> PreparedVideo:
    """Check that an upload is a complete MP4/MOV within ``limits``."""
    if sniff_image_format(data) is not None or data[8:12] in _STILL_BRANDS:
        raise MediaRejected(_PICTURE_NOT_VIDEO)
    if data[4:8] != b"ftyp":
        raise MediaRejected(_NOT_MP4)
    if len(data) > limits.max_bytes:
        found, limit = _render_apart(len(data), limits.max_bytes, _size_apart)
        raise MediaRejected(
            f"That video is {found}, over the limit of {limit}; trim it or export it at a lower quality."
        )
    try:
        duration, width, height = _read_movie(data)
    except (struct.error, IndexError) as exc:
        raise MediaRejected(_BROKEN_MP4) from exc
    if limits.max_seconds is not None and duration is not None and duration > limits.max_seconds:
        found, limit = _render_apart(duration, limits.max_seconds, _decimal)
        raise MediaRejected(
            f"That video is {found} seconds long, over the {limit}-second limit; trim it and try again."
        )
    return PreparedVideo(data=data, duration_seconds=duration, width=width, height=height)


# --- images -----------------------------------------------------------------------------------


def _unknown_file_message(data: bytes) -> str:
    if not data:
        return _EMPTY_IMAGE
    brands = _iso_brands(data)
    if brands & _AVIF_BRANDS:
        return "That picture is in AVIF format, which I cannot read; export it as JPEG or PNG and attach it again."
    if brands & _HEIF_BRANDS:
        return "That picture is in HEIC format, which I cannot read; export it as JPEG or PNG and attach it again."
    if brands:
        return _VIDEO_NOT_IMAGE
    return _NOT_IMAGE


def _iso_brands(data: bytes) -> frozenset[bytes]:
    """Major and compatible brands of an ISO media file (MP4, MOV, HEIC), or nothing."""
    if len(data) < 12 or data[4:8] != b"ftyp":
        return frozenset()
    end = min(len(data), int.from_bytes(data[0:4], "big"))
    brands = {data[8:12]}
    brands.update(data[pos : pos + 4] for pos in range(16, end - 3, 4))
    return frozenset(brands)


def _too_many_pixels_message(width: int, height: int) -> str:
    found, limit = _render_apart(width * height / 1e6, MAX_PIXELS / 1e6, _decimal)
    return (
        f"That image is {width}×{height} pixels ({found} megapixels), over the {limit}-megapixel limit; "
        "attach a smaller version."
    )


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return 1
    # A damaged tag must not block an otherwise good picture, so anything odd means "as stored".
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check_shape(width: int, height: int, limits: ImageLimits) -> None:
    if min(width, height) < limits.min_side:
        raise MediaRejected(
            f"That image is only {width}×{height} pixels; attach one at least {limits.min_side} pixels on each side."
        )
    aspect = width / height
    too_tall = limits.min_aspect is not None and aspect <= limits.min_aspect
    too_wide = limits.max_aspect is not None and aspect >= limits.max_aspect
    if not (too_tall or too_wide):
        return
    bound = limits.min_aspect if too_tall else limits.max_aspect
    assert bound is not None
    found, _ = _render_apart(aspect, bound, _ratio_text)
    if limits.min_aspect is not None and limits.max_aspect is not None:
        allowed = f"strictly between {_ratio_text(limits.min_aspect, 2)} and {_ratio_text(limits.max_aspect, 2)}"
    elif too_tall:
        allowed = f"wider than {_ratio_text(bound, 2)}"
    else:
        allowed = f"narrower than {_ratio_text(bound, 2)}"
    where = "top and bottom" if too_tall else "sides"
    raise MediaRejected(
        f"That image is {found} (width:height), but it must be {allowed}; crop its {where} and try again."
    )


def _reencode(img: Image.Image, orientation: int, target: tuple[int, int], limits: ImageLimits) -> PreparedImage:
    """Re-encode ``img`` (stored orientation), resampled to ``target`` before it is turned upright, so no
    step ever holds two full-size copies: each full-size intermediate is released as soon as it is used."""
    icc_profile = img.info.get("icc_profile")
    try:
        img = _replace(img, _to_working_mode(img))
    except ValueError as exc:
        raise MediaRejected(_ODD_COLOURS) from exc

    # Many PNGs carry an alpha channel that is opaque everywhere; those are photos, not cut-outs.
    if img.mode == "RGBA" and img.getchannel("A").getextrema()[0] == 255:
        img = _replace(img, img.convert("RGB"))
    has_alpha = img.mode == "RGBA"
    fmt = _output_format(has_alpha, limits.formats)

    if target != img.size:
        img = _replace(img, _resize(img, target))
    if orientation in _UPRIGHT:
        img = _replace(img, img.transpose(_UPRIGHT[orientation]))
    img = _replace(img, _to_srgb(img, icc_profile if isinstance(icc_profile, bytes) else None))
    if img.mode == "RGBA" and fmt is ImageFormat.JPEG:
        img = _replace(img, _flatten_on_white(img))
    # Pillow copies info (EXIF, comments, ICC) into the output on save; none of it should leave here.
    img.info = {}

    data, img = _encode_to_fit(img, fmt, limits)
    return PreparedImage(data=data, format=fmt, width=img.width, height=img.height)


def _replace(old: Image.Image, new: Image.Image) -> Image.Image:
    """``new``, with ``old``'s pixels freed now rather than when the caller's reference goes."""
    if new is not old:
        old.close()
    return new


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Lanczos resampling in horizontal bands; the result matches one pass to within a level of rounding."""
    width, height = size
    resized = Image.new(img.mode, size)
    band = max(1, _RESIZE_BAND_PIXELS // width)
    scale = img.height / height
    for top in range(0, height, band):
        bottom = min(height, top + band)
        box = (0.0, top * scale, float(img.width), bottom * scale)
        piece = img.resize((width, bottom - top), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
        resized.paste(piece, (0, top))
    return resized


def _to_working_mode(img: Image.Image) -> Image.Image:
    """8 bits per channel, as RGB, RGBA or CMYK."""
    if img.mode in _SIXTEEN_BIT_MODES:
        img = img.convert("I").point(lambda v: v / 256)
    if img.mode in ("I", "F"):
        img = _stretch_to_8_bits(img)
    if img.mode == "CMYK" or (img.mode in ("RGB", "RGBA") and not _has_colour_key(img)):
        return img
    return img.convert("RGBA" if img.has_transparency_data else "RGB")


def _has_colour_key(img: Image.Image) -> bool:
    return img.mode == "RGB" and "transparency" in img.info


def _stretch_to_8_bits(img: Image.Image) -> Image.Image:
    low, high = img.getextrema()
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        raise ValueError("expected a single band")
    if low >= 0 and high <= 255:
        return img.convert("L")
    scale = 255 / (high - low) if high > low else 0.0
    return img.point(lambda v: (v - low) * scale).convert("L")


def _to_srgb(img: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """RGB or RGBA in sRGB, colour-managed when the file carried a profile."""
    if icc_profile and img.mode in ("RGB", "RGBA", "CMYK"):
        try:
            converted = ImageCms.profileToProfile(
                img,
                ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)),
                ImageCms.createProfile("sRGB"),
                outputMode="RGBA" if img.mode == "RGBA" else "RGB",
            )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            # A broken or mismatched profile only costs colour accuracy, so fall through.
            converted = None
        if converted is not None:
            return converted
    return img if img.mode in ("RGB", "RGBA") else img.convert("RGB")


def _flatten_on_white(img: Image.Image) -> Image.Image:
    background = Image.new("RGB", img.size, (255, 255, 255))
    background.paste(img, mask=img.getchannel("A"))
    return background


def _output_format(has_alpha: bool, formats: frozenset[ImageFormat]) -> ImageFormat:
    if has_alpha:
        preference = (ImageFormat.PNG, ImageFormat.WEBP, ImageFormat.JPEG)
    else:
        preference = (ImageFormat.JPEG, ImageFormat.WEBP, ImageFormat.PNG)
    return next(fmt for fmt in preference if fmt in formats)


def _too_detailed_message(limits: ImageLimits) -> str:
    return (
        f"That image has too much fine detail to fit in {format_size(limits.max_bytes)} at a usable size; "
        "attach a simpler or smaller picture."
    )


def _fit_long_side(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``size`` scaled so its longer side is at most ``long_side``."""
    width, height = size
    if max(width, height) <= long_side:
        return size
    scale = long_side / max(width, height)
    return max(1, min(long_side, round(width * scale))), max(1, min(long_side, round(height * scale)))


def _encode(img: Image.Image, fmt: ImageFormat, quality: int) -> bytes:
    buffer = io.BytesIO()
    if fmt is ImageFormat.JPEG:
        img.save(buffer, "JPEG", quality=quality)
    elif fmt is ImageFormat.WEBP:
        img.save(buffer, "WEBP", quality=quality, method=4)
    else:
        img.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def _encode_to_fit(img: Image.Image, fmt: ImageFormat, limits: ImageLimits) -> tuple[bytes, Image.Image]:
    quality = _JPEG_QUALITY
    data = _encode(img, fmt, quality)
    if len(data) <= limits.max_bytes:
        return data, img

    if fmt is not ImageFormat.PNG:
        first_size = len(data)
        # Start at the highest quality predicted to fit; if none is, go straight to the lowest.
        start = next(
            (i for i, q in enumerate(_FALLBACK_QUALITIES) if first_size * _QUALITY_SIZE_RATIO[q] <= limits.max_bytes),
            len(_FALLBACK_QUALITIES) - 1,
        )
        for quality in _FALLBACK_QUALITIES[start:]:
            data = _encode(img, fmt, quality)
            if len(data) <= limits.max_bytes:
                return data, img

    base = img
    floor = min(_MIN_LONG_SIDE, limits.max_side)
    long_side = max(base.size)
    while len(data) > limits.max_bytes:
        if long_side <= floor:
            raise MediaRejected(_too_detailed_message(limits))
        # Encoded size grows roughly with the pixel count, so the byte ratio gives the scale; the margin
        # covers smaller images costing more bytes per pixel.
        estimate = math.sqrt(limits.max_bytes / len(data)) * 0.9
        long_side = max(floor, int(long_side * min(_SHRINK_STEP, estimate)))
        size = _fit_long_side(base.size, long_side)
        if min(size) < limits.min_side:
            raise MediaRejected(_too_detailed_message(limits))
        img = _resize(base, size)
        data = _encode(img, fmt, quality)
    return data, img


# --- video ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Box:
    kind: bytes
    start: int
    """Offset of the payload, after the header."""
    end: int


def _boxes(data: bytes, start: int, end: int) -> Iterator[_Box]:
    """The boxes between ``start`` and ``end``; a size that does not fit refuses the file."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise MediaRejected(_BROKEN_MP4)
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise MediaRejected(_BROKEN_MP4)
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or size > end - pos:
            raise MediaRejected(_BROKEN_MP4)
        yield _Box(kind, pos + header, pos + size)
        pos += size


def _child(data: bytes, parent: _Box, kind: bytes) -> _Box | None:
    found = None
    for box in _boxes(data, parent.start, parent.end):
        if box.kind == kind and found is None:
            found = box
    return found


def _field(data: bytes, box: _Box, offset: int, fmt: str) -> int:
    """An integer at ``offset`` within ``box``'s payload."""
    pos = box.start + offset
    if pos + struct.calcsize(fmt) > box.end:
        raise MediaRejected(_BROKEN_MP4)
    value: int = struct.unpack_from(fmt, data, pos)[0]
    return value


def _field_bytes(data: bytes, box: _Box, offset: int, length: int) -> bytes:
    pos = box.start + offset
    if pos + length > box.end:
        raise MediaRejected(_BROKEN_MP4)
    return data[pos : pos + length]


def _read_movie(data: bytes) -> tuple[float | None, int | None, int | None]:
    """Duration in seconds and the first video track's display size."""
    top = list(_boxes(data, 0, len(data)))
    if not top or top[0].kind != b"ftyp":
        raise MediaRejected(_NOT_MP4)
    moov = next((box for box in top if box.kind == b"moov"), None)
    if moov is None:
        raise MediaRejected(_BROKEN_MP4)
    duration = _movie_duration(data, moov)
    for trak in _boxes(data, moov.start, moov.end):
        if trak.kind != b"trak":
            continue
        tkhd = _child(data, trak, b"tkhd")
        mdia = _child(data, trak, b"mdia")
        hdlr = _child(data, mdia, b"hdlr") if mdia is not None else None
        if tkhd is None or hdlr is None or _field_bytes(data, hdlr, 8, 4) != b"vide":
            continue
        width, height = _track_size(data, tkhd)
        return duration, width, height
    raise MediaRejected(_NO_VIDEO_TRACK)


def _movie_duration(data: bytes, moov: _Box) -> float | None:
    mvhd = _child(data, moov, b"mvhd")
    if mvhd is None:
        raise MediaRejected(_BROKEN_MP4)
    version = _field(data, mvhd, 0, ">B")
    if version == 0:
        timescale, duration, unknown = _field(data, mvhd, 12, ">I"), _field(data, mvhd, 16, ">I"), 2**32 - 1
    elif version == 1:
        timescale, duration, unknown = _field(data, mvhd, 20, ">I"), _field(data, mvhd, 24, ">Q"), 2**64 - 1
    else:
        raise MediaRejected(_BROKEN_MP4)
    if duration == 0:
        # Fragmented files leave mvhd empty and may state the total in mvex/mehd instead.
        duration = _fragment_duration(data, moov)
    if timescale == 0 or duration in (0, unknown):
        return None
    return duration / timescale


def _fragment_duration(data: bytes, moov: _Box) -> int:
    mvex = _child(data, moov, b"mvex")
    mehd = _child(data, mvex, b"mehd") if mvex is not None else None
    if mehd is None:
        return 0
    return _field(data, mehd, 4, ">Q" if _field(data, mehd, 0, ">B") == 1 else ">I")


def _track_size(data: bytes, tkhd: _Box) -> tuple[int | None, int | None]:
    matrix = 52 if _field(data, tkhd, 0, ">B") == 1 else 40
    a, b = _field(data, tkhd, matrix, ">i"), _field(data, tkhd, matrix + 4, ">i")
    d = _field(data, tkhd, matrix + 16, ">i")
    width = round(_field(data, tkhd, matrix + 36, ">I") / 65536)
    height = round(_field(data, tkhd, matrix + 40, ">I") / 65536)
    # Phone videos are stored sideways with a 90° matrix; report the size as played.
    if a == 0 and d == 0 and b != 0:
        width, height = height, width
    return width or None, height or None


# --- wording ----------------------------------------------------------------------------------


def _decimal(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _size_text(n_bytes: int, digits: int) -> str:
    if n_bytes < 1024:
        return "1 byte" if n_bytes == 1 else f"{n_bytes} bytes"
    for unit, scale in (("KB", 1024), ("MB", 1024**2)):
        if round(n_bytes / scale, digits) < 1024:
            return f"{_decimal(n_bytes / scale, digits)} {unit}"
    return f"{_decimal(n_bytes / 1024**3, digits)} GB"


def _ratio_text(aspect: float, digits: int) -> str:
    """Width:height as ``"5.2:1"`` or ``"1:4"``."""
    if aspect >= 1:
        return f"{_decimal(aspect, digits)}:1"
    return f"1:{_decimal(1 / aspect, digits)}"


def _render_apart(found: float, limit: float, render: Callable[[float, int], str]) -> tuple[str, str]:
    """Render both numbers with just enough digits that "20.04 MB, over 20 MB" never reads "20 MB"."""
    found_text, limit_text = render(found, 1), render(limit, 1)
    for digits in (2, 3, 4):
        if found_text != limit_text:
            break
        found_text, limit_text = render(found, digits), render(limit, digits)
    return found_text, limit_text


def _size_apart(n_bytes: float, digits: int) -> str:
    """Like format_size, ending in an exact byte count when rounding cannot tell two sizes apart."""
    return f"{int(n_bytes):,} bytes" if digits > 3 else _size_text(int(n_bytes), digits)

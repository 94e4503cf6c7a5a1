"""Prepared inputs kept on disk with their job, so a job can be sent (again) long after Discord's
attachment URL has expired. Files are named by the job key; the job row holds the description."""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any

from PIL import Image

from providers.media import ImageFormat, PreparedImage, PreparedVideo

log = logging.getLogger(__name__)

#: The card's thumbnail: this many pixels on the long side, as a JPEG of a few tens of KB at most.
THUMBNAIL_SIDE = 320
THUMBNAIL_QUALITY = 80


class InputMissing(Exception):
    """A job's prepared input is gone (pruned, or the data folder was replaced)."""


class InputStore:
    """Saves and loads prepared inputs under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, key: str, media: PreparedImage | PreparedVideo) -> dict[str, Any]:
        """Write the input and return the description to keep with the job."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if isinstance(media, PreparedImage):
            name = f"{key}.{media.extension}"
            described: dict[str, Any] = {
                "kind": "image",
                "format": media.format.value,
                "width": media.width,
                "height": media.height,
            }
        else:
            name = f"{key}.mp4"
            described = {
                "kind": "video",
                "duration": media.duration_seconds,
                "width": media.width,
                "height": media.height,
            }
        self._write(name, media.data)
        if isinstance(media, PreparedImage):
            thumbnail = make_thumbnail(media.data)
            if thumbnail is not None:
                described["thumbnail"] = f"{key}.thumb.jpg"
                described["thumbnail_size"] = len(thumbnail)
                self._write(described["thumbnail"], thumbnail)
        return {"file": name, "size": len(media.data), **described}

    def _write(self, name: str, data: bytes) -> None:
        path = self.folder / name
        partial = path.with_suffix(path.suffix + ".part")
        partial.write_bytes(data)
        os.replace(partial, path)

    def kept(self, described: dict[str, Any]) -> bool:
        """Whether the input a job description points to is still on disk."""
        return "file" in described and (self.folder / str(described["file"])).is_file()

    def load_thumbnail(self, described: dict[str, Any]) -> bytes | None:
        """The small copy made for the card, or None when there is none (older jobs, pruned files)."""
        name = described.get("thumbnail")
        if not name:
            return None
        try:
            return (self.folder / str(name)).read_bytes()
        except FileNotFoundError:
            return None

    def load(self, described: dict[str, Any]) -> PreparedImage | PreparedVideo:
        """The prepared input a job description points to."""
        path = self.folder / str(described["file"])
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputMissing(f"the input file {path.name} is no longer kept") from None
        if described["kind"] == "image":
            return PreparedImage(
                data=data,
                format=ImageFormat(described["format"]),
                width=int(described["width"]),
                height=int(described["height"]),
            )
        return PreparedVideo(
            data=data,
            duration_seconds=described.get("duration"),
            width=described.get("width"),
            height=described.get("height"),
        )

    def discard(self, described: dict[str, Any]) -> None:
        """Delete a job's input when the job was not created after all."""
        (self.folder / str(described["file"])).unlink(missing_ok=True)

    @staticmethod
    def upload_name(interaction_id: int) -> str:
        return f"upload-{interaction_id}.bin"

    def keep_upload(self, interaction_id: int, data: bytes) -> str:
        """Keep an attachment's bytes as read, before preparation; returns the file's name."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = self.upload_name(interaction_id)
        self._write(name, data)
        return name

    def load_upload(self, name: str) -> bytes | None:
        """Bytes kept by ``keep_upload``, or None when they are gone."""
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None

    def discard_upload(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    def prune(self, older_than_seconds: float) -> int:
        """Delete inputs older than the retention period; returns how many were deleted."""
        if not self.folder.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self.folder.iterdir():
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def make_thumbnail(data: bytes) -> bytes | None:
    """A JPEG of at most THUMBNAIL_SIDE pixels on the long side; transparency becomes white."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            source.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            if source.mode == "RGB":
                small = source.copy()
            else:
                rgba = source.convert("RGBA")
                small = Image.new("RGB", rgba.size, "white")
                small.paste(rgba, mask=rgba.getchannel("A"))
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
        return buffer.getvalue()
    except (OSError, ValueError) as exc:
        log.warning("No thumbnail for an input (%s)", exc)
        return None

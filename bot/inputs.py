"""Prepared inputs kept on disk with their job, so a job can be sent (again) long after Discord's
attachment URL has expired. Files are named by the job key; the job row holds the description."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from providers.media import ImageFormat, PreparedImage, PreparedVideo


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
        path = self.folder / name
        partial = path.with_suffix(path.suffix + ".part")
        partial.write_bytes(media.data)
        os.replace(partial, path)
        return {"file": name, "size": len(media.data), **described}

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

"""Loopback fakes of the HiDream, PixVerse and Vidu video APIs for tests and the benchmark."""

from __future__ import annotations

from tests.fakes.common import (
    FAULT_KINDS,
    OUTCOME_KINDS,
    DroppedCallback,
    FakeClock,
    FakeProvider,
    Fault,
    Outcome,
    RecordedRequest,
    SentCallback,
    Task,
    build_mp4,
    cover_jpeg,
    mp4_duration,
    sample_image,
)
from tests.fakes.hidream import FakeHiDream
from tests.fakes.pixverse import FakePixVerse
from tests.fakes.vidu import FakeVidu

__all__ = [
    "FAULT_KINDS",
    "OUTCOME_KINDS",
    "DroppedCallback",
    "FakeClock",
    "FakeHiDream",
    "FakePixVerse",
    "FakeProvider",
    "FakeVidu",
    "Fault",
    "Outcome",
    "RecordedRequest",
    "SentCallback",
    "Task",
    "build_mp4",
    "cover_jpeg",
    "mp4_duration",
    "sample_image",
]

"""Loopback fakes of the HiDream, PixVerse and Vidu video APIs for tests and the benchmark."""

from __future__ import annotations

from simulators.fake_providers.common import (
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
from simulators.fake_providers.hidream import FakeHiDream
from simulators.fake_providers.pixverse import FakePixVerse
from simulators.fake_providers.vidu import FakeVidu

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

"""The fake's clock and its snowflake generator."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

DISCORD_EPOCH_MS: Final = 1_420_070_400_000
"""Milliseconds since the Unix epoch at Discord's epoch (2015-01-01)."""


class Clock:
    """Wall-clock time plus an offset that tests push forward with :meth:`advance`.

    The clock keeps ticking in real time, so a rate-limit window measured on it lasts as many real seconds
    as it says, while :meth:`advance` can still age messages and expire tokens instantly.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        """Seconds since the Unix epoch, as the fake sees them."""
        return time.time() + self.offset

    def __call__(self) -> float:
        return self.now()

    def advance(self, seconds: float) -> float:
        """Jump forward; return the new reading."""
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        self.offset += seconds
        return self.now()

    def datetime(self, at: float | None = None) -> datetime:
        """A timezone-aware UTC datetime for ``at`` (default: now)."""
        return datetime.fromtimestamp(self.now() if at is None else at, UTC)

    def iso(self, at: float | None = None) -> str:
        """An ISO 8601 timestamp in the form Discord sends."""
        return self.datetime(at).isoformat()


class Snowflakes:
    """Discord-style ids whose timestamp bits follow the fake clock, strictly increasing."""

    def __init__(self, clock: Clock, worker: int = 1) -> None:
        self.clock = clock
        self.worker = worker & 0x1F
        self._last = 0

    def next(self) -> int:
        """A fresh id."""
        millis = max(int(self.clock.now() * 1000) - DISCORD_EPOCH_MS, 0)
        candidate = (millis << 22) | (self.worker << 17)
        self._last = max(candidate, self._last + 1)
        return self._last

    def next_on_shard(self, shard_id: int, shard_count: int) -> int:
        """A fresh id whose guild would live on ``shard_id`` (Discord routes by ``(id >> 22) % shard_count``)."""
        candidate = self.next()
        while (candidate >> 22) % shard_count != shard_id:
            candidate = ((candidate >> 22) + 1) << 22 | (self.worker << 17)
        self._last = candidate
        return candidate

    @staticmethod
    def time_of(snowflake: int) -> float:
        """Unix seconds encoded in an id."""
        return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000.0

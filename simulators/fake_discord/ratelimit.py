"""Discord-like rate limits on the fake's clock: per-route buckets, sub-limits and the global limit."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable
from dataclasses import dataclass, field

UNLIMITED = 1_000_000
"""What the headers advertise while rate limiting is turned off."""


@dataclass(frozen=True, slots=True)
class Limit:
    """``limit`` requests per ``per`` seconds (a fixed window that opens with the first request)."""

    limit: int
    per: float


@dataclass(slots=True)
class RateLimits:
    """The fake's limits; every field can be changed per test, and ``enabled=False`` turns them all off."""

    enabled: bool = True
    channel_send: Limit = Limit(5, 5.0)
    """POST /channels/{c}/messages, per channel."""
    channel_edit: Limit = Limit(5, 5.0)
    """PATCH /channels/{c}/messages/{m}, per channel."""
    old_message_edit: Limit = Limit(3, 6.0)
    """Extra limit on edits of messages older than ``old_message_age``, per channel (429 with code 30046)."""
    old_message_age: float = 3600.0
    interaction_webhook: Limit = Limit(5, 2.0)
    """All /webhooks/{app}/{token}... routes of one interaction token."""
    global_limit: Limit = Limit(50, 1.0)
    """Every bot-token request (interaction callbacks and webhooks are exempt, as on Discord)."""
    default: Limit = Limit(50, 1.0)
    """Any other route, per route and major parameter."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One counter a request draws from."""

    name: str
    key: Hashable
    limit: Limit
    code: int | None = None
    message: str = "You are being rate limited."
    scope: str = "user"

    @property
    def hash(self) -> str:
        """A stable Discord-looking bucket hash for ``X-RateLimit-Bucket``."""
        return hashlib.blake2b(self.name.encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a rate-limit check: the headers to send and, when refused, why."""

    allowed: bool
    bucket: Bucket
    limit: int
    remaining: int
    reset_after: float
    """Seconds until the header bucket resets (fake-clock seconds, which tick as real seconds)."""
    retry_after: float = 0.0
    refused_by: Bucket | None = None
    is_global: bool = False

    def headers(self, real_now: float) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers, plus ``Retry-After`` & co. on a refusal."""
        reset_after = _ceil_ms(self.reset_after)
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": f"{real_now + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket.hash,
        }
        if not self.allowed:
            scope = "global" if self.is_global else (self.refused_by or self.bucket).scope
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
            headers["X-RateLimit-Scope"] = scope
            headers["Via"] = "1.1 google"
            if self.is_global:
                headers["X-RateLimit-Global"] = "true"
        return headers

    def body(self) -> dict[str, object]:
        """The JSON body of a 429."""
        refused = self.refused_by or self.bucket
        body: dict[str, object] = {
            "message": refused.message,
            "retry_after": _ceil_ms(self.retry_after),
            "global": self.is_global,
        }
        if refused.code is not None:
            body["code"] = refused.code
        return body


def _ceil_ms(seconds: float) -> float:
    return math.ceil(max(seconds, 0.0) * 1000) / 1000


@dataclass(slots=True)
class RateLimiter:
    """Fixed windows keyed by bucket; checks all of a request's buckets before drawing from any."""

    limits: RateLimits
    _windows: dict[tuple[str, Hashable], _Window] = field(default_factory=dict)

    def _window(self, bucket: Bucket, now: float) -> _Window:
        key = (bucket.name, bucket.key)
        window = self._windows.get(key)
        if window is None or now >= window.start + bucket.limit.per:
            window = self._windows[key] = _Window(start=now)
        return window

    def check(self, main: Bucket, extra: list[Bucket], global_bucket: Bucket | None, now: float) -> Verdict:
        """Decide one request; on success every bucket's counter goes up by one."""
        main_window = self._window(main, now)
        if not self.limits.enabled:
            # Generous headers, so discord.py's own limiter never holds requests back either.
            return Verdict(True, main, UNLIMITED, UNLIMITED, main.limit.per)

        def verdict(allowed: bool, refused: Bucket | None = None, retry: float = 0.0) -> Verdict:
            remaining = max(main.limit.limit - main_window.count, 0)
            reset_after = main_window.start + main.limit.per - now
            return Verdict(
                allowed,
                main,
                main.limit.limit,
                remaining,
                reset_after,
                retry_after=retry,
                refused_by=refused,
                is_global=refused is not None and refused is global_bucket,
            )

        checks = ([global_bucket] if global_bucket is not None else []) + [main, *extra]
        windows = []
        for bucket in checks:
            window = self._window(bucket, now)
            if window.count >= bucket.limit.limit:
                return verdict(False, bucket, window.start + bucket.limit.per - now)
            windows.append(window)
        for window in windows:
            window.count += 1
        return verdict(True)

    def reset(self) -> None:
        """Forget every window."""
        self._windows.clear()

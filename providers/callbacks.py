"""Callbacks: what a provider's request to the bot claims, and the checks it must pass first.

A callback is never the truth about a task: the bot asks the provider's API before it believes anything.
What a client reads from a callback is only which tasks to check now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

#: How far a signed callback's own time may be from ours; a nonce is remembered for as long.
CALLBACK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Callback:
    """A request that says it comes from a provider, as it arrived."""

    method: str
    #: The query string exactly as sent, without the ``?``.
    query_string: str
    #: Case-insensitive.
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class CallbackNews:
    """Which tasks a callback is about and whether it says they ended; a hint to check them."""

    task_ids: tuple[str, ...]
    #: The idempotency keys the tasks were sent under, where the callback carries them.
    keys: tuple[str, ...] = ()
    finished: bool = True
    #: Unique per signed delivery within CALLBACK_SKEW; None for an unsigned callback.
    nonce: str | None = None


class CallbackRefused(Exception):
    """The callback is not taken; ``status`` is the HTTP status to answer with, the message says why (for logs)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def unauthentic(reason: str) -> CallbackRefused:
    return CallbackRefused(401, reason)


def json_object(callback: Callback) -> dict[str, Any]:
    """The callback's body as a JSON object; CallbackRefused (400) otherwise."""
    try:
        body = json.loads(callback.body)
    except (ValueError, UnicodeDecodeError):
        raise CallbackRefused(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise CallbackRefused(400, "the body is not a JSON object")
    return body


def hmac_sha256_base64(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_matches(expected: str, given: str) -> bool:
    """Compared in constant time, so the time taken tells nothing about how much of it matched."""
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def within_skew(moment: datetime, now: datetime) -> bool:
    return abs(now - moment) <= CALLBACK_SKEW


def text(value: Any) -> str | None:
    """A task id as text: providers send them as strings or as (large) integers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str) and str(value).strip():
        return str(value).strip()
    return None

"""PixVerse's account webhook (set in PixVerse's console; notes/providers.md §2 fact 7 and its last section).

Webhook-Signature is Base64(HMAC-SHA256(webhook secret, "{Webhook-Timestamp}\\n{Webhook-Nonce}\\n{fields}")), where
the fields are the body's top-level fields sorted by key and written as an HTML form would be. That reading of
the page is not verified against a real webhook, so polling stays on as the fallback: a webhook that fails the
check only costs its wake-up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from providers.callbacks import (
    Callback,
    CallbackNews,
    hmac_sha256_base64,
    json_object,
    signature_matches,
    text,
    unauthentic,
    within_skew,
)
from providers.pixverse.models import VideoStatus

FINAL_STATUSES = frozenset({VideoStatus.SUCCEEDED, VideoStatus.MODERATION_FAILED, VideoStatus.FAILED})


def _form_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def signing_string(timestamp: str, nonce: str, body: dict[str, Any]) -> str:
    fields = urlencode([(key, _form_value(body[key])) for key in sorted(body)])
    return f"{timestamp}\n{nonce}\n{fields}"


def read_webhook(callback: Callback, *, secret: str) -> CallbackNews:
    """Check a PixVerse webhook and say which video it names."""
    headers = callback.headers
    given = headers.get("Webhook-Signature", "")
    timestamp = headers.get("Webhook-Timestamp", "").strip()
    nonce = headers.get("Webhook-Nonce", "").strip()
    if not given or not timestamp or not nonce:
        raise unauthentic("a Webhook-Signature, Webhook-Timestamp or Webhook-Nonce header is missing")
    try:
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (ValueError, OverflowError, OSError):
        raise unauthentic(f"Webhook-Timestamp {timestamp!r} is not Unix seconds") from None
    if not within_skew(sent_at, callback.received_at):
        raise unauthentic(f"Webhook-Timestamp {timestamp} is outside the allowed clock skew")
    body = json_object(callback)
    if not signature_matches(hmac_sha256_base64(secret, signing_string(timestamp, nonce, body)), given):
        raise unauthentic("the signature does not match")
    video_id = text(body.get("id"))
    status = body.get("status")
    return CallbackNews(
        task_ids=(video_id,) if video_id else (),
        finished=isinstance(status, int) and status in FINAL_STATUSES,
        nonce=nonce,
    )

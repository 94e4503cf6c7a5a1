"""Vidu's signed callbacks (seed 004 ``callback_url``; notes/providers.md §3 fact 5).

The signature is Base64(HMAC-SHA256(API token that created the task, signing string)); the signing string is
the method, the path, the raw query, ``vidu``, the Date header, then every header named in
X-HMAC-SIGNED-HEADERS as ``Key:Value``, each followed by a newline. The body is not signed, so it only
names the task to check; the Date and the nonce must both be signed, or a recorded callback could be
replayed under new ones.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

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

ACCESS_KEY = "vidu"
ALGORITHM = "hmac-sha256"
#: The states a callback reports (seed 004): only the last two end a task.
FINAL_STATES = frozenset({"success", "failed"})


def signing_string(method: str, path: str, query: str, date: str, signed: list[tuple[str, str]]) -> str:
    lines = [method.upper(), path or "/", query, ACCESS_KEY, date]
    return "\n".join(lines) + "\n" + "".join(f"{name}:{value}\n" for name, value in signed)


def read_callback(callback: Callback, *, secret: str, path: str, payload_prefix: str) -> CallbackNews:
    """Check a Vidu callback made for ``path`` (the callback URL's own path) and say which task it names."""
    headers = callback.headers
    given = headers.get("X-HMAC-SIGNATURE", "")
    if not given:
        raise unauthentic("no X-HMAC-SIGNATURE header")
    if headers.get("X-HMAC-ALGORITHM", ALGORITHM).lower() != ALGORITHM:
        raise unauthentic("an unknown signature algorithm")
    names = [name.strip() for name in headers.get("X-HMAC-SIGNED-HEADERS", "").split(";") if name.strip()]
    if {"date", "x-request-nonce"} - {name.lower() for name in names}:
        raise unauthentic("the Date and x-request-nonce headers are not both signed")
    date = headers.get("Date", "")
    nonce = headers.get("x-request-nonce", "").strip()
    try:
        sent_at = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise unauthentic("no readable Date header") from None
    if sent_at.tzinfo is None or not within_skew(sent_at, callback.received_at):
        raise unauthentic(f"its Date {date!r} is outside the allowed clock skew")
    if not nonce:
        raise unauthentic("an empty nonce")
    signed = [(name, headers.get(name, "")) for name in names]
    expected = hmac_sha256_base64(secret, signing_string(callback.method, path, callback.query_string, date, signed))
    if not signature_matches(expected, given):
        raise unauthentic("the signature does not match")
    body = json_object(callback)
    task_id = text(body.get("id")) or text(body.get("task_id"))
    payload = body.get("payload")
    keys = (
        (payload.removeprefix(payload_prefix),)
        if isinstance(payload, str) and payload.startswith(payload_prefix)
        else ()
    )
    return CallbackNews(
        task_ids=(task_id,) if task_id else (),
        keys=keys,
        finished=str(body.get("state", "")).lower() in FINAL_STATES,
        nonce=nonce,
    )

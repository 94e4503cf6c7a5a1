"""The HTTP plumbing every provider client shares: timeouts, bounded retries, secret scrubbing.

Reads are retried a bounded number of times with jittered backoff and honour ``Retry-After``.
A job-creating request is sent once: when it fails in a way that leaves its outcome open, the caller
gets SubmitOutcomeUnknown and must reconcile before sending it again.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from providers.errors import (
    CredentialsRefused,
    InvalidRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
    UnreadableAnswer,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: An API answer larger than this is not JSON we asked for.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
REDACTED = "[redacted]"


@dataclass(frozen=True)
class RetryPolicy:
    """How reads are retried."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    #: A Retry-After longer than this is not waited out inside one call; the error goes to the caller.
    max_retry_after: float = 30.0


@dataclass(frozen=True)
class HttpResponse:
    """A provider's answer, read in full."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)


Sleep = Callable[[float], Awaitable[None]]


class EndpointKind(StrEnum):
    """What a request to a provider is for, as operators count them."""

    CREATE = "create"
    POLL = "poll"
    CANCEL = "cancel"
    UPLOAD = "upload"
    CHECK = "check"
    LIST = "list"


#: Told of every request sent: (provider, endpoint kind, outcome, seconds). The outcome is "ok" or the
#: ErrorKind of the error the answer became.
RequestObserver = Callable[[str, EndpointKind, str, float], None]
OK = "ok"


class ProviderHTTP:
    """One provider's view of the shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        provider: str,
        base_url: str,
        secrets: Sequence[str] = (),
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        observer: RequestObserver | None = None,
    ) -> None:
        self.session = session
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._secrets = tuple(secret for secret in secrets if secret)
        self._sleep = sleep
        self._observer = observer

    async def request(
        self,
        method: str,
        path: str,
        *,
        kind: EndpointKind,
        parse: Callable[[HttpResponse], T],
        idempotent: bool,
        headers: Mapping[str, str] | None = None,
        headers_factory: Callable[[], Mapping[str, str]] | None = None,
        json_body: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        timeout_seconds: float | None = None,
    ) -> T:
        """Send a request and parse the answer; ``parse`` raises ProviderError for error answers.

        ``headers_factory`` is called for every attempt (PixVerse needs a fresh trace id each time);
        ``form`` likewise, because aiohttp cannot send one FormData twice.
        """
        attempts = self.retry.attempts if idempotent else 1
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                sent_headers = dict(headers or {})
                if headers_factory is not None:
                    sent_headers.update(headers_factory())
                response = await self._send(
                    method,
                    path,
                    headers=sent_headers,
                    json_body=json_body,
                    data=form() if form is not None else None,
                    params=params,
                    timeout_seconds=timeout_seconds or self.timeout,
                    idempotent=idempotent,
                )
                if not idempotent and response.status in (500, 502, 504):
                    raise SubmitOutcomeUnknown(
                        self.provider,
                        f"the server answered HTTP {response.status}, so it is unknown whether the job was created",
                    )
                parsed = self._parse(parse, response, idempotent=idempotent)
            except ProviderError as exc:
                self._observe(kind, exc.kind.value, started)
                self._scrub(exc)
                delay = self._retry_delay(exc, attempt) if attempt < attempts else None
                if delay is None:
                    raise
                log.info(
                    "%s %s %s failed (%s); retry %d of %d in %.1f s",
                    self.provider,
                    method,
                    path,
                    exc.message,
                    attempt,
                    attempts - 1,
                    delay,
                )
                await self._sleep(delay)
            else:
                self._observe(kind, OK, started)
                return parsed
        raise AssertionError("unreachable")  # pragma: no cover

    def _observe(self, kind: EndpointKind, outcome: str, started: float) -> None:
        if self._observer is not None:
            self._observer(self.provider, kind, outcome, time.perf_counter() - started)

    def _parse(self, parse: Callable[[HttpResponse], T], response: HttpResponse, *, idempotent: bool) -> T:
        try:
            return parse(response)
        except UnreadableAnswer as exc:
            if idempotent or not 200 <= response.status < 300:
                raise
            # A success status with a body we cannot read: the job may well exist.
            raise SubmitOutcomeUnknown(
                self.provider, f"{exc.message}, so it is unknown whether the job was created", code=exc.code
            ) from None

    async def _send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        json_body: Any,
        data: aiohttp.FormData | None,
        params: Sequence[tuple[str, str]] | None,
        timeout_seconds: float,
        idempotent: bool,
    ) -> HttpResponse:
        url = self.base_url + path
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                json=json_body,
                data=data,
                params=params,
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
                allow_redirects=False,
            ) as response:
                body = await _read_capped(response, MAX_RESPONSE_BYTES)
                return HttpResponse(response.status, dict(response.headers), body)
        except aiohttp.ClientConnectorError as exc:
            # Nothing reached the server, so even a job-creating request is safe to send again.
            raise ProviderUnavailable(self.provider, f"could not connect ({_reason(exc)})") from None
        except TimeoutError:
            if not idempotent:
                raise SubmitOutcomeUnknown(
                    self.provider,
                    f"no answer within {timeout_seconds:g} s, so it is unknown whether the job was created",
                ) from None
            raise ProviderTimeout(self.provider, f"no answer within {timeout_seconds:g} s") from None
        except aiohttp.ClientError as exc:
            if not idempotent:
                raise SubmitOutcomeUnknown(
                    self.provider,
                    f"the connection failed ({type(exc).__name__}), so it is unknown whether the job was created",
                ) from None
            raise ProviderUnavailable(self.provider, f"the connection failed ({type(exc).__name__})") from None

    def _retry_delay(self, exc: ProviderError, attempt: int) -> float | None:
        if not exc.retryable:
            return None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after if exc.retry_after <= self.retry.max_retry_after else None
        ceiling = min(self.retry.max_delay, self.retry.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security

    def _scrub(self, exc: ProviderError) -> None:
        message = exc.message
        for secret in self._secrets:
            message = message.replace(secret, REDACTED)
        if message != exc.message:
            exc.message = message
            exc.args = (message,)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise aiohttp.ClientPayloadError(f"response larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    return type(exc.os_error).__name__ if exc.os_error else type(exc).__name__


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def decode_json(provider: str, response: HttpResponse) -> Any:
    """The body as JSON, or UnreadableAnswer when the provider sent something else."""
    try:
        return response.json()
    except ValueError:
        raise UnreadableAnswer(provider, f"the answer (HTTP {response.status}) was not valid JSON") from None


def validate_model(provider: str, model: type[M], data: Any) -> M:
    """Read a documented response shape; a shape we cannot read is the provider's fault, not the user's."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise UnreadableAnswer(
            provider, f"the answer did not match the documented {model.__name__} ({where}: {first['msg']})"
        ) from None


def error_for_status(provider: str, response: HttpResponse, message: str, *, code: str | None = None) -> ProviderError:
    """The error for an HTTP status when the provider's body says nothing more specific."""
    status = response.status
    if status in (401, 403):
        return CredentialsRefused(provider, f"the API key was refused (HTTP {status}): {message}", code=code)
    if status == 429:
        return RateLimited(
            provider,
            f"too many requests (HTTP 429): {message}",
            code=code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        return ProviderUnavailable(provider, f"server error (HTTP {status}): {message}", code=code)
    return InvalidRequest(provider, f"the request was refused (HTTP {status}): {message}", code=code)


def response_message(response: HttpResponse, *keys: str) -> str:
    """The provider's own words from an error answer: the first of ``keys`` in a JSON body, else its text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in keys:
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:300]
    text = response.body[:200].decode("utf-8", "replace").strip()
    return text or "no detail"

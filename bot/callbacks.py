"""The callback listener: the one server that faces the internet, on CALLBACK_PORT.

It serves ``POST /callbacks/{provider}`` for the providers that call back and nothing else. A callback
is checked by its provider's client (signature, clock skew), its nonce is checked against the ledger (so a
replay is refused by whichever process receives it), and all it may do is make its task's job due for a check
now. It never waits on Discord or a provider: it answers as soon as the ledger has the wake-up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from aiohttp import web

from bot.store import TaskReport
from providers import Callback, CallbackNews, CallbackRefused, VideoProvider

log = logging.getLogger(__name__)

#: The path of each provider's callbacks under PUBLIC_URL; PixVerse's is entered in its console.
CALLBACK_PATH = "/callbacks/{provider}"
#: A real callback is a few kilobytes.
MAX_BODY = 256 * 1024
#: Answered on a GET of a callback path, so that ``python -m bot check`` can tell this listener from any other.
PROBE_HEADER = "X-Animate-Callbacks"

Report = Callable[[str, CallbackNews], Awaitable[TaskReport]]
Outcome = Callable[[str, str], None]


def callback_url(public_url: str, provider: str) -> str:
    return public_url.rstrip("/") + CALLBACK_PATH.format(provider=provider)


class SourceLimiter:
    """A token bucket per source address, so that one flooding source cannot crowd out the others."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str) -> bool:
        now = self._clock()
        tokens, at = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > 10_000:
            self._buckets.popitem(last=False)
        return allowed


def source_of(request: web.Request) -> str:
    """The caller's address; behind a reverse proxy on this machine or a private network, the address the
    proxy saw (the last X-Forwarded-For hop, the only one the proxy itself wrote)."""
    remote = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded:
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return remote
        if address.is_loopback or address.is_private:
            return forwarded.split(",")[-1].strip() or remote
    return remote


class CallbackListener:
    """Takes the providers' callbacks and turns each into a wake-up in the ledger."""

    def __init__(
        self,
        providers: Mapping[str, VideoProvider],
        report: Report,
        *,
        host: str,
        port: int,
        rate_per_source: float = 100.0,
        burst_per_source: float = 200.0,
        max_in_flight: int = 256,
        on_outcome: Outcome | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        public_url: str = "",
    ) -> None:
        self.providers = {name: provider for name, provider in providers.items() if provider.calls_back}
        self.host = host
        self.port = port
        self._report = report
        self._limiter = SourceLimiter(rate_per_source, burst_per_source)
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._on_outcome = on_outcome
        self._now = now
        self._unknown_logged: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._runner: web.AppRunner | None = None
        #: PUBLIC_URL's own path, for a proxy that forwards it as it is rather than stripping it.
        self._prefix = urlsplit(public_url).path.rstrip("/")

    @property
    def active(self) -> bool:
        return bool(self.providers)

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", CALLBACK_PATH, self._serve)
        if self._prefix:
            app.router.add_route("*", self._prefix + CALLBACK_PATH, self._serve)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=512)
        await site.start()
        if self._runner.addresses:
            self.port = int(self._runner.addresses[0][1])
        log.info(
            "Callback listener on %s:%d for %s", self.host, self.port, ", ".join(sorted(self.providers)) or "nobody"
        )

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["provider"]
        provider = self.providers.get(name)
        if provider is None:
            return web.Response(status=404, text="Not found")
        if request.method in ("GET", "HEAD"):
            return web.Response(status=405, text="Callbacks are POSTed.", headers={"Allow": "POST", PROBE_HEADER: name})
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        if not self._limiter.allow(source_of(request)):
            self._count(name, "rate_limited")
            return web.Response(status=429, text="Too many requests", headers={"Retry-After": "1"})
        if request.content_length is not None and request.content_length > MAX_BODY:
            self._count(name, "too_large")
            return web.Response(status=413, text="Too large")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._count(name, "too_large")
            return web.Response(status=413, text="Too large")
        callback = Callback(
            method=request.method,
            query_string=request.rel_url.raw_query_string,
            headers=request.headers,
            body=body,
            received_at=self._now(),
        )
        try:
            news = provider.read_callback(callback)
        except CallbackRefused as refused:
            self._count(name, f"refused_{refused.status}")
            log.debug("A %s callback from %s was refused: %s", provider.display_name, request.remote, refused.reason)
            return web.Response(status=refused.status, text="Refused")
        if not news.task_ids and not news.keys:
            self._count(name, "refused_400")
            return web.Response(status=400, text="No task named")
        if self._in_flight.locked():
            # The ledger is behind: the provider tries again, and polling is there if it does not.
            self._count(name, "busy")
            return web.Response(status=503, text="Busy", headers={"Retry-After": "5"})
        async with self._in_flight:
            try:
                report = await self._report(name, news)
            except Exception:
                error_id = secrets.token_hex(4)
                log.exception("A %s callback could not be recorded (error %s)", provider.display_name, error_id)
                self._count(name, "error")
                # The provider tries again; polling is there if it does not.
                return web.Response(status=503, text=f"Error {error_id}", headers={"Retry-After": "5"})
        if report.replayed:
            self._count(name, "replayed")
            log.warning("A %s callback repeated a nonce already seen; refused", provider.display_name)
            return web.Response(status=401, text="Refused")
        if not report.known:
            self._count(name, "unknown_task")
            self._log_unknown(provider, news)
        else:
            self._count(name, "accepted" if report.jobs else "ended_task")
        # 200 in every case from here, so that the provider stops retrying (PixVerse expects the body "ok").
        return web.Response(status=200, text="ok")

    def _log_unknown(self, provider: VideoProvider, news: CallbackNews) -> None:
        key = (provider.name, ",".join(news.task_ids or news.keys))
        if key in self._unknown_logged:
            return
        self._unknown_logged[key] = None
        while len(self._unknown_logged) > 1000:
            self._unknown_logged.popitem(last=False)
        log.warning(
            "A %s callback named task %s, which no job of this bot has; answered 200 so it is not sent again",
            provider.display_name,
            key[1],
        )

    def _count(self, provider: str, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(provider, outcome)

"""``/healthz``: the running bot's liveness over HTTP, for the container's HEALTHCHECK; ``/metrics``: its
Prometheus metrics.

/healthz answers 200 when the gateway is connected, the ledger takes writes and the scheduler runs;
503 naming each part that is not, otherwise.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]
#: The Prometheus text exposition, produced when scraped.
Exposition = Callable[[], Awaitable[bytes]]


class HealthServer:
    """A tiny HTTP server answering ``GET /healthz`` from the given probes and, with ``metrics``, ``GET /metrics``."""

    def __init__(
        self,
        probes: dict[str, Probe],
        *,
        host: str,
        port: int,
        metrics: Exposition | None = None,
    ) -> None:
        self.probes = probes
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        if self.metrics is not None:
            app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self._runner.addresses:
            self.port = int(self._runner.addresses[0][1])
        log.info("Health endpoint on http://%s:%d/healthz", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        failing = []
        for name, probe in self.probes.items():
            try:
                healthy = await probe()
            except Exception:
                log.exception("The %s health probe failed", name)
                healthy = False
            if not healthy:
                failing.append(name)
        body = {"status": "failing" if failing else "ok", "failing": failing}
        return web.json_response(body, status=503 if failing else 200)

    async def _metrics(self, request: web.Request) -> web.Response:
        assert self.metrics is not None
        body = await self.metrics()
        # CONTENT_TYPE_LATEST carries its own charset parameter, which aiohttp's content_type= refuses.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def probe_url(url: str, *, timeout: float = 5.0) -> tuple[bool, str]:
    """Ask a running bot's health endpoint; (healthy, what it said)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a local http URL we build
            return True, response.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode()
        try:
            failing = json.loads(detail).get("failing", [])
            return False, "failing: " + ", ".join(failing)
        except ValueError:
            return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"no answer ({exc})"

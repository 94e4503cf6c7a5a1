"""Prometheus metrics: what the bot did (counters, histograms) and what the ledger holds (gauges).

One Metrics object per bot, with its own registry, so that several bots in one process never share
counters. Label values are bounded: providers, states, endpoint and error kinds, Discord route shapes
and status codes; never a job, user, guild or channel id, and never a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.store import Job, JobState, Store
from providers import ProviderError

if TYPE_CHECKING:
    from providers.http import EndpointKind, RequestObserver

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "route_kind"]

#: Provider requests take from a few milliseconds (a poll) to a minute (an upload or a slow create).
PROVIDER_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: From a task finishing at the provider to its announcement: one poll interval plus the delivery.
ANNOUNCE_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: Statuses that count toward Discord's ban of an IP after 10,000 in 10 minutes (a 429 counts unless its
#: scope is "shared"; the issue counts 404s as well, as those mostly come from a dead token or card).
INVALID_STATUSES = frozenset({401, 403, 404})

_API_PREFIX = re.compile(r"^/api(?:/v\d+)?(?=/|$)")
_WORD = re.compile(r"^@?[a-z][a-z0-9_\-]{0,31}$")
#: Discord routes whose next segment after an id is a secret token.
_TOKEN_AFTER = frozenset({"webhooks", "interactions"})


def route_kind(path: str) -> str | None:
    """The shape of a Discord REST path, with ids and tokens replaced, e.g.
    ``/webhooks/{id}/{token}/messages/@original``; None for a path outside the REST API (the gateway, the CDN).

    Only Discord's own words survive: any other segment becomes ``{id}``, ``{token}`` or ``{value}``,
    so the result is bounded and no secret ever lands in it.
    """
    prefix = _API_PREFIX.match(path)
    if prefix is None:
        return None
    segments = [segment for segment in path[prefix.end() :].split("/") if segment]
    shaped: list[str] = []
    for index, segment in enumerate(segments):
        if index >= 2 and segments[index - 2] in _TOKEN_AFTER and shaped[index - 1] == "{id}":
            shaped.append("{token}")
        elif segment.isdigit():
            shaped.append("{id}")
        elif _WORD.match(segment):
            shaped.append(segment)
        else:
            shaped.append("{value}")
    return "/" + "/".join(shaped)


class Metrics:
    """Every metric the bot exposes, and the hooks the rest of the bot calls."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        #: The configured providers: their series exist (at zero) before anything happens.
        self.providers: tuple[str, ...] = ()
        registry = self.registry
        self.jobs_created = Counter(
            "animate_jobs_created", "Jobs recorded in the ledger.", ["provider"], registry=registry
        )
        self.jobs_finished = Counter(
            "animate_jobs_finished", "Jobs that reached a final state.", ["provider", "state"], registry=registry
        )
        self.jobs_queued = Gauge(
            "animate_jobs_queued",
            "Jobs waiting in the queue now (read from the ledger).",
            ["provider"],
            registry=registry,
        )
        self.jobs_running = Gauge(
            "animate_jobs_running",
            "Jobs being sent to or running at their provider now (read from the ledger).",
            ["provider"],
            registry=registry,
        )
        self.provider_requests = Counter(
            "animate_provider_requests",
            "HTTP requests to the providers, by endpoint kind and outcome (ok or the error kind).",
            ["provider", "endpoint", "outcome"],
            registry=registry,
        )
        self.provider_request_seconds = Histogram(
            "animate_provider_request_duration_seconds",
            "Time from sending a provider request to reading its answer.",
            ["provider", "endpoint"],
            buckets=PROVIDER_BUCKETS,
            registry=registry,
        )
        self.provider_refusals = Counter(
            "animate_provider_refusals",
            "Errors a provider gave the scheduler for a job, by endpoint and error kind.",
            ["provider", "endpoint", "kind"],
            registry=registry,
        )
        self.announce_delay_seconds = Histogram(
            "animate_announce_delay_seconds",
            "Time from the bot seeing a job finished at its provider to the announcement being posted.",
            ["provider"],
            buckets=ANNOUNCE_BUCKETS,
            registry=registry,
        )
        self.credits_spent = Counter(
            "animate_credits_spent", "Provider credits of succeeded jobs.", ["provider"], registry=registry
        )
        self.discord_requests = Counter(
            "animate_discord_requests",
            "Discord REST requests, by method, route shape and status (or 'error' when no answer came).",
            ["method", "route", "status"],
            registry=registry,
        )
        self.discord_rate_limited = Counter(
            "animate_discord_rate_limited",
            "Discord REST answers with HTTP 429, by scope.",
            ["route", "scope"],
            registry=registry,
        )
        self.discord_invalid_requests = Counter(
            "animate_discord_invalid_requests",
            "Discord REST answers that count toward the ban after 10,000 in 10 minutes (401, 403, 404, "
            "and 429 unless shared).",
            ["status"],
            registry=registry,
        )

        self.callbacks = Counter(
            "animate_callbacks",
            "Requests to the callback listener, by provider and outcome (accepted, unknown_task, ended_task, "
            "refused_401, refused_400, rate_limited, ...).",
            ["provider", "outcome"],
            registry=registry,
        )

    def track(self, providers: Iterable[str]) -> None:
        """Expose the configured providers' counters and gauges from the start, at zero."""
        self.providers = tuple(providers)
        for provider in self.providers:
            self.jobs_created.labels(provider)
            self.credits_spent.labels(provider)

    # Scrape.

    async def render(self, store: Store) -> bytes:
        """The text exposition, with the ledger gauges read just now."""
        counts = await store.unfinished_counts()
        queued = dict.fromkeys(self.providers, 0)
        running = dict.fromkeys(self.providers, 0)
        for (provider, state), count in counts.items():
            queued.setdefault(provider, 0)
            running.setdefault(provider, 0)
            if state == "queued":
                queued[provider] += count
            else:
                running[provider] += count
        self.jobs_queued.clear()
        self.jobs_running.clear()
        for provider, count in queued.items():
            self.jobs_queued.labels(provider).set(count)
        for provider, count in running.items():
            self.jobs_running.labels(provider).set(count)
        return generate_latest(self.registry)

    # The scheduler's observer (bot.jobs.observer.JobObserver).

    def job_created(self, job: Job) -> None:
        self.jobs_created.labels(job.provider).inc()

    def job_finished(self, job: Job) -> None:
        self.jobs_finished.labels(job.provider, job.state.value).inc()
        if job.state is JobState.SUCCEEDED and job.credits:
            self.credits_spent.labels(job.provider).inc(job.credits)

    def refused(self, provider: str, endpoint: str, error: ProviderError) -> None:
        self.provider_refusals.labels(provider, endpoint, error.kind.value).inc()

    # The callback listener.

    def callback(self, provider: str, outcome: str) -> None:
        self.callbacks.labels(provider, outcome).inc()

    # The presenter's callback.

    def announced(self, provider: str, seconds: float) -> None:
        self.announce_delay_seconds.labels(provider).observe(max(0.0, seconds))

    # The provider clients' observer.

    def provider_observer(self, provider: str) -> RequestObserver:
        """The observer for one provider's client, labelled with the provider's short name."""

        def observe(_client: str, kind: EndpointKind, outcome: str, seconds: float) -> None:
            self.provider_requests.labels(provider, kind.value, outcome).inc()
            self.provider_request_seconds.labels(provider, kind.value).observe(seconds)

        return observe

    # Discord REST, through discord.py's aiohttp session.

    def discord_trace(self) -> aiohttp.TraceConfig:
        """A trace config for discord.py's ``http_trace``: counts every REST request it makes."""
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._discord_answered)
        trace.on_request_exception.append(self._discord_failed)
        return trace

    def discord_answer(self, method: str, path: str, status: int, scope: str | None) -> None:
        route = route_kind(path)
        if route is None:
            return
        self.discord_requests.labels(method, route, str(status)).inc()
        if status == 429:
            self.discord_rate_limited.labels(route, scope or "unknown").inc()
        if status in INVALID_STATUSES or (status == 429 and scope != "shared"):
            self.discord_invalid_requests.labels(str(status)).inc()

    async def _discord_answered(
        self, _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        scope = params.response.headers.get("X-RateLimit-Scope")
        self.discord_answer(params.method, params.url.path, params.response.status, scope)

    async def _discord_failed(
        self, _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        route = route_kind(params.url.path)
        if route is not None:
            self.discord_requests.labels(params.method, route, "error").inc()

"""The composition root: builds every long-lived object in order and closes them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bot.callbacks import CallbackListener
from bot.config import Settings
from bot.health import HealthServer
from bot.jobs.inputs import InputStore
from bot.jobs.leases import LeaseKeeper
from bot.jobs.preparation import PreparationPool
from bot.jobs.retention import Retention
from bot.jobs.scheduler import Scheduler
from bot.jobs.scheduler_settings import scheduler_settings
from bot.jobs.service import JobService
from bot.metrics import Metrics
from bot.providers import build_providers
from bot.store import Store
from bot.ui.app import AnimateBot
from bot.ui.intake import IntakeDesk
from bot.ui.presenter import Presenter

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def assemble(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    now: Callable[[], datetime] = utc_now,
    **bot_options: Any,
) -> AsyncIterator[AnimateBot]:
    """The bot with its providers, ledger, scheduler, job service, presenter, metrics, health server and, when a
    provider calls back, the callback listener.

    Everything is closed on exit, in the reverse order.
    """
    metrics = Metrics()
    providers = build_providers(settings, session, metrics)
    metrics.track(providers)
    if providers:
        log.info("Providers enabled: %s", ", ".join(sorted(providers)))
    else:
        log.warning("No provider has an API key; set HIDREAM_API_KEY, PIXVERSE_API_KEY or VIDU_API_KEY.")
    store = await Store.open(settings.ledger_location)
    preparation = PreparationPool()
    stack = contextlib.AsyncExitStack()
    try:
        inputs = InputStore(settings.inputs_folder)
        retention = Retention(
            store,
            inputs,
            input_retention=timedelta(hours=settings.input_retention_hours),
            job_retention=timedelta(days=settings.job_retention_days) if settings.job_retention_days else None,
        )
        lease = timedelta(seconds=settings.lease_seconds)
        calling_back = frozenset(name for name, provider in providers.items() if provider.calls_back)
        scheduler = Scheduler(
            store,
            providers,
            inputs,
            scheduler_settings(settings, callback_providers=calling_back),
            maintenance=retention,
            observer=metrics,
        )
        jobs = JobService(providers, scheduler, inputs, session, preparation=preparation)
        presenter = Presenter(
            store,
            inputs,
            session,
            mark_delivered=scheduler.mark_delivered,
            edit_seconds=settings.progress_edit_seconds,
            can_stylize="hidream" in providers,
            now=now,
            lease=lease,
            on_announced=metrics.announced,
        )
        intakes = IntakeDesk(store, jobs, inputs, presenter, now=now, lease=lease)
        leases = LeaseKeeper(
            store,
            [scheduler.owner, presenter.owner, *intakes.owners],
            lease,
            process=scheduler.owner,
            on_count=presenter.budget.share,
        )
        await leases.start()
        stack.push_async_callback(leases.stop)
        async with AnimateBot(
            settings=settings,
            providers=providers,
            store=store,
            scheduler=scheduler,
            jobs=jobs,
            presenter=presenter,
            intakes=intakes,
            now=now,
            http_trace=metrics.discord_trace(),
            **bot_options,
        ) as bot:

            async def scheduler_ok() -> bool:
                return scheduler.running

            health = HealthServer(
                {"gateway": bot.gateway_ok, "database": store.check_writable, "scheduler": scheduler_ok},
                host=settings.health_host,
                port=settings.health_port,
                metrics=lambda: metrics.render(store),
            )
            callbacks = CallbackListener(
                providers,
                scheduler.task_reported,
                host=settings.callback_host,
                port=settings.callback_port,
                on_outcome=metrics.callback,
                now=now,
                public_url=settings.public_url,
            )
            if settings.health_port:
                await health.start()
            try:
                if callbacks.active:
                    await callbacks.start()
                yield bot
            finally:
                await callbacks.stop()
                await health.stop()
    finally:
        # Only after the bot's stop, which waited for work in flight whose leases had to stay alive meanwhile.
        await stack.aclose()
        await asyncio.to_thread(preparation.close)
        await store.close()

"""The composition root: builds every long-lived object in order and closes them in reverse."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bot.config import Settings
from bot.jobs.inputs import InputStore
from bot.jobs.preparation import PreparationPool
from bot.jobs.retention import Retention
from bot.jobs.scheduler import Scheduler
from bot.jobs.scheduler_settings import scheduler_settings
from bot.jobs.service import JobService
from bot.providers import build_providers
from bot.store import Store
from bot.ui.app import AnimateBot

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
    """The bot with its providers, ledger, scheduler and job service; everything is closed on exit."""
    providers = build_providers(settings, session)
    if providers:
        log.info("Providers enabled: %s", ", ".join(sorted(providers)))
    else:
        log.warning("No provider has an API key; set HIDREAM_API_KEY, PIXVERSE_API_KEY or VIDU_API_KEY.")
    store = await Store.open(settings.database_path)
    preparation = PreparationPool()
    try:
        inputs = InputStore(settings.inputs_folder)
        retention = Retention(
            store,
            inputs,
            input_retention=timedelta(hours=settings.input_retention_hours),
            job_retention=timedelta(days=settings.job_retention_days) if settings.job_retention_days else None,
        )
        scheduler = Scheduler(store, providers, inputs, scheduler_settings(settings), maintenance=retention)
        jobs = JobService(providers, scheduler, inputs, session, preparation=preparation)
        async with AnimateBot(
            settings=settings, providers=providers, store=store, scheduler=scheduler, jobs=jobs, now=now, **bot_options
        ) as bot:
            yield bot
    finally:
        await asyncio.to_thread(preparation.close)
        await store.close()

"""Helpers for tests that run the scheduler against the fake providers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.jobs.inputs import InputStore
from bot.jobs.scheduler import Scheduler
from bot.store import Job, JobState, NewJob, Store
from providers import Operation, VideoProvider
from simulators.fake_providers import build_mp4
from tests.conftest import image_bytes

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "hidream": {},
    "pixverse": {"prompt": "a wave"},
    "vidu": {"prompt": "a wave"},
}


def new_job(
    provider: VideoProvider,
    inputs: InputStore,
    *,
    operation: Operation = Operation.IMAGE_TO_VIDEO,
    key: str | None = None,
    user_id: int = 42,
    **params: Any,
) -> NewJob:
    """A job as a command would create it: validated options and the prepared input saved to disk."""
    data = build_mp4(duration=2.0) if operation is Operation.STYLIZE else image_bytes()
    media = provider.prepare_media(operation, data)
    merged = {**(DEFAULT_PARAMS[provider.name] if operation is Operation.IMAGE_TO_VIDEO else {}), **params}
    assert provider.validate(operation, merged) == []
    job_key = key or uuid.uuid4().hex
    return NewJob(
        channel_id=100,
        user_id=user_id,
        guild_id=1,
        provider=provider.name,
        operation=operation.value,
        model=str(merged.get("model")) if merged.get("model") else None,
        params=merged,
        media=inputs.save(job_key, media),
        key=job_key,
    )


async def wait_for(
    store: Store, job_id: int, done: Callable[[Job], bool] = lambda job: job.state.finished, within: float = 10.0
) -> Job:
    """Poll the ledger until ``done`` holds for the job."""
    async with asyncio.timeout(within):
        while True:
            job = await store.get_job(job_id)
            assert job is not None
            if done(job):
                return job
            await asyncio.sleep(0.02)


class Recorder:
    """A subscriber that keeps every published update."""

    def __init__(self) -> None:
        self.updates: list[Job] = []

    async def __call__(self, job: Job) -> None:
        self.updates.append(job)

    def states(self, job_id: int) -> list[JobState]:
        seen: list[JobState] = []
        for job in self.updates:
            if job.id == job_id and (not seen or seen[-1] is not job.state):
                seen.append(job.state)
        return seen


async def open_scheduler(
    store_path: Path, providers: dict[str, VideoProvider], inputs: InputStore, **kwargs: Any
) -> tuple[Store, Scheduler, Recorder]:
    store = await Store.open(store_path)
    scheduler = Scheduler(store, providers, inputs, **kwargs)
    recorder = Recorder()
    scheduler.subscribe(recorder)
    await scheduler.start()
    return store, scheduler, recorder

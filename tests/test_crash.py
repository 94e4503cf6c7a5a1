"""Crash safety: a process running the scheduler is killed with SIGKILL at each step of a job, restarted,
and every job still ends in exactly one final state, with one provider task and one delivery."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.jobs.inputs import InputStore
from bot.store import Job, JobState, Store
from providers import VideoProvider
from tests.conftest import hidream_client, pixverse_client, vidu_client
from tests.fakes import FakeHiDream, FakePixVerse, FakeVidu
from tests.scheduling import new_job

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"HD_KEY": "hd-crash-key", "PV_KEY": "pv-crash-key", "VD_KEY": "vd-crash-key"}
SUBMIT_ROUTE = {"hidream": "submit_img2video", "pixverse": "generate", "vidu": "create"}


@dataclass
class DeliverySink:
    """Stands in for Discord's message create with ``enforce_nonce``: a repeated nonce makes no new message."""

    received: Counter[str] = field(default_factory=Counter)
    messages: dict[str, str] = field(default_factory=dict)
    hang_next: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        nonce = body["nonce"]
        self.received[nonce] += 1
        if self.hang_next:
            self.hang_next -= 1
            await asyncio.sleep(60)
        self.messages.setdefault(nonce, body["state"])
        return web.json_response({"id": len(self.messages)})


@dataclass
class Rig:
    tmp: Path
    fakes: dict[str, Any]
    sink: DeliverySink
    store: Store
    inputs: InputStore
    process: asyncio.subprocess.Process | None = None

    async def spawn(self, *, hold: bool = False) -> None:
        args = [
            sys.executable,
            "-m",
            "tests.crash_child",
            "--db",
            str(self.tmp / "bot.db"),
            "--inputs",
            str(self.tmp / "inputs"),
            "--delivery",
            self.sink.url,
            *(arg for name, fake in self.fakes.items() for arg in (f"--{name}", fake.base_url)),
        ]
        if hold:
            args.append("--hold")
        env = {**os.environ, **KEYS, "PYTHONPATH": str(ROOT)}
        self.process = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        assert line.strip() == b"ready"

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()
        assert self.process.returncode == -9
        self.process = None

    async def job(self, job_id: int) -> Job:
        job = await self.store.get_job(job_id)
        assert job is not None
        return job

    async def until(self, check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not await check():  # noqa: ASYNC110 - the state lives in another process
                await asyncio.sleep(0.02)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    sink = DeliverySink()
    app = web.Application()
    app.router.add_post("/deliver", sink.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sink.url = f"http://127.0.0.1:{port}/deliver"
    async with (
        FakeHiDream(api_key=KEYS["HD_KEY"], run_seconds=1.0) as hd,
        FakePixVerse(api_key=KEYS["PV_KEY"], run_seconds=1.0) as pv,
        FakeVidu(api_key=KEYS["VD_KEY"], run_seconds=1.0) as vd,
    ):
        store = await Store.open(tmp_path / "bot.db")
        built = Rig(tmp_path, {"hidream": hd, "pixverse": pv, "vidu": vd}, sink, store, InputStore(tmp_path / "inputs"))
        try:
            yield built
        finally:
            if built.process is not None:
                await built.kill()
            await store.close()
            await runner.cleanup()


CLIENTS: dict[str, tuple[Callable[..., VideoProvider], str]] = {
    "hidream": (hidream_client, "HD_KEY"),
    "pixverse": (pixverse_client, "PV_KEY"),
    "vidu": (vidu_client, "VD_KEY"),
}


async def create(rig: Rig, provider: str) -> int:
    """A queued job in the ledger, as a command would leave it."""
    build, key = CLIENTS[provider]
    async with aiohttp.ClientSession() as session:
        client = build(session, rig.fakes[provider], key=KEYS[key])
        job = await rig.store.create_job(new_job(client, rig.inputs))
    return job.id


async def finish_and_check(rig: Rig, provider: str, job_id: int, expected: JobState) -> Job:
    async def delivered() -> bool:
        return (await rig.job(job_id)).delivered

    await rig.until(delivered)
    job = await rig.job(job_id)
    assert job.state is expected
    events = await rig.store.events(job_id)
    finals = [event for event in events if event.to_state.finished and event.from_state is not event.to_state]
    assert len(finals) == 1, events
    assert [event.detail for event in events].count("delivered") == 1
    assert len(rig.sink.messages) == 1
    assert rig.sink.messages[job.key] == expected.value
    await rig.kill()
    return job


@pytest.mark.parametrize("provider", ["hidream", "pixverse", "vidu"])
async def test_killed_before_the_submit(rig: Rig, provider: str) -> None:
    job_id = await create(rig, provider)
    await rig.spawn(hold=True)
    await asyncio.sleep(0.3)
    assert (await rig.job(job_id)).state is JobState.QUEUED
    await rig.kill()

    await rig.spawn()
    await finish_and_check(rig, provider, job_id, JobState.SUCCEEDED)
    assert len(rig.fakes[provider].tasks) == 1
    assert rig.fakes[provider].route_count(SUBMIT_ROUTE[provider]) == 1


@pytest.mark.parametrize(
    ("provider", "expected", "submits"),
    [
        # PixVerse: sent again under the job's own trace id, which returns the first task.
        ("pixverse", JobState.SUCCEEDED, 2),
        # Vidu: the task is found by the job key in its payload; nothing is sent again.
        ("vidu", JobState.SUCCEEDED, 1),
        # HiDream: no way to find the task, so the job fails and is never sent again.
        ("hidream", JobState.FAILED, 1),
    ],
)
async def test_killed_after_the_submit_before_its_id_is_stored(
    rig: Rig, provider: str, expected: JobState, submits: int
) -> None:
    fake = rig.fakes[provider]
    fake.fail(SUBMIT_ROUTE[provider], "hang", seconds=30, after=True)
    job_id = await create(rig, provider)
    await rig.spawn()

    async def created_at_provider() -> bool:
        return len(fake.tasks) == 1

    await rig.until(created_at_provider)
    job = await rig.job(job_id)
    assert (job.state, job.task_id) == (JobState.SUBMITTING, None)
    await rig.kill()

    await rig.spawn()
    job = await finish_and_check(rig, provider, job_id, expected)
    assert len(fake.tasks) == 1
    assert fake.route_count(SUBMIT_ROUTE[provider]) == submits
    if expected is JobState.SUCCEEDED:
        assert job.task_id == str(next(iter(fake.tasks)))
    else:
        assert job.error_reason is not None
        assert "not sent again" in job.error_reason


@pytest.mark.parametrize("provider", ["hidream", "pixverse", "vidu"])
async def test_killed_while_running(rig: Rig, provider: str) -> None:
    job_id = await create(rig, provider)
    await rig.spawn()

    async def running() -> bool:
        return (await rig.job(job_id)).state is JobState.RUNNING

    await rig.until(running)
    await rig.kill()

    await rig.spawn()
    await finish_and_check(rig, provider, job_id, JobState.SUCCEEDED)
    assert len(rig.fakes[provider].tasks) == 1
    assert rig.fakes[provider].route_count(SUBMIT_ROUTE[provider]) == 1


@pytest.mark.parametrize("provider", ["hidream", "pixverse", "vidu"])
async def test_killed_after_success_before_delivery(rig: Rig, provider: str) -> None:
    rig.sink.hang_next = 1
    job_id = await create(rig, provider)
    await rig.spawn()

    async def delivering() -> bool:
        return sum(rig.sink.received.values()) == 1

    await rig.until(delivering)
    job = await rig.job(job_id)
    assert (job.state, job.delivered) == (JobState.SUCCEEDED, False)
    await rig.kill()

    await rig.spawn()
    await finish_and_check(rig, provider, job_id, JobState.SUCCEEDED)
    assert rig.sink.received[job.key] == 2
    assert len(rig.fakes[provider].tasks) == 1

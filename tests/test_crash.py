"""Crash safety: the bot, run as users run it (`python -m bot`, pointed at the fake Discord and the fake
providers), is killed with SIGKILL at each step of its jobs and started again. Checked from outside:
every job ends in one final state, at most one provider task per job, and every end is announced in the
channel exactly once by the real presenter, mentioning its owner, a success with its own video."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.store import Job, JobState, Store
from simulators.fake_discord import FakeDiscord, FakeMessage, FakeUser
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu, Outcome
from tests.conftest import image_bytes
from tests.discord_world import REQUIRED, status_of

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ("hidream", "pixverse", "vidu")
KEYS = {"hidream": "hd-crash-key", "pixverse": "pv-crash-key", "vidu": "vd-crash-key"}
SUBMIT_ROUTE = {"hidream": "submit_img2video", "pixverse": "generate", "vidu": "create"}
FOLLOWUP = r"^/webhooks/\d+/[^/]+$"


@dataclass
class Rig:
    """The fakes, the bot's ledger read from outside, and the bot process that comes and goes."""

    tmp: Path
    discord: FakeDiscord
    fakes: dict[str, Any]
    session: aiohttp.ClientSession
    owners: dict[str, FakeUser] = field(default_factory=dict)
    store: Store | None = None
    process: asyncio.subprocess.Process | None = None
    runs: int = 0

    async def spawn(self, **settings: str) -> None:
        """Start `python -m bot` and wait until it has synced its commands and its gateway is up."""
        env = {key: value for key, value in os.environ.items() if not key.endswith(("_API_KEY", "_TOKEN", "_URL"))}
        env.update(
            PYTHONPATH=str(ROOT),
            FAKE_DISCORD_API=self.discord.api_url,
            FAKE_DISCORD_GATEWAY=self.discord.gateway_url,
            DISCORD_TOKEN=self.discord.token,
            DISCORD_GUILD_IDS=str(self.discord.guild.id),
            DATABASE_URL=f"sqlite:///{self.tmp / 'bot.db'}",
            POLL_INTERVAL_SECONDS="0.1",
            PROGRESS_EDIT_SECONDS="1",
            HEALTH_PORT="0",
            LOG_LEVEL="INFO",
            HIDREAM_SUBMITS_PER_MINUTE="0",
        )
        for name, fake in self.fakes.items():
            env[f"{name.upper()}_API_KEY"] = KEYS[name]
            env[f"{name.upper()}_BASE_URL"] = fake.base_url
        env.update(settings)
        synced = len(self.discord.syncs)
        self.runs += 1
        with (self.tmp / f"bot-{self.runs}.log").open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.bot_child", cwd=self.tmp, env=env, stdout=log, stderr=log
            )
        await self.discord.wait_until(lambda: len(self.discord.syncs) > synced, timeout=30)
        if self.store is None:
            self.store = await Store.open(self.tmp / "bot.db")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        assert self.process.returncode == -signal.SIGKILL
        self.process = None

    def log(self) -> str:
        return "".join((self.tmp / f"bot-{run}.log").read_text() for run in range(1, self.runs + 1))

    async def animate(self, provider: str) -> Any:
        image = self.discord.add_attachment("cat.png", image_bytes(640, 360), "image/png")
        payload = self.discord.slash(
            "animate",
            subcommand=provider,
            options=REQUIRED[provider],
            attachments={"image": image},
            user=self.owners[provider],
        )
        return await self.discord.push_interaction(payload)

    async def job_for(self, interaction: Any) -> Job:
        """The job a command created, found by the card its interaction turned into."""
        record = self.discord.interaction(interaction)

        async def found() -> Job | None:
            for job in await self.ledger.jobs_of_user(record.user_id, limit=100):
                if record.original_id is not None and job.message_id == record.original_id:
                    return job
            return None

        job: Job = await self.until(found)
        return job

    async def jobs_for(self, interactions: list[Any]) -> list[Job]:
        return [await self.job_for(interaction) for interaction in interactions]

    async def reaches(self, jobs: list[Job], done: Callable[[Job], bool], within: float = 20.0) -> list[Job]:
        latest: list[Job] = []

        async def all_done() -> bool:
            nonlocal latest
            latest = await self.ledger.get_jobs([job.id for job in jobs])
            return len(latest) == len(jobs) and all(done(job) for job in latest)

        try:
            await self.until(all_done, within)
        except TimeoutError:
            seen = [(job.id, job.provider, job.state.value, job.queue_position, job.task_id) for job in latest]
            raise AssertionError(f"the jobs did not get there in {within} s: {seen}") from None
        return sorted(latest, key=lambda job: job.id)

    async def until(self, check: Callable[[], Any], within: float = 20.0) -> Any:
        async with asyncio.timeout(within):
            while not (result := await check()):  # noqa: ASYNC110 - the state lives in another process
                await asyncio.sleep(0.02)
        return result

    @property
    def ledger(self) -> Store:
        assert self.store is not None
        return self.store

    def tasks_of(self, job: Job) -> list[Any]:
        """The provider's tasks that carry the job: by task id, or for Vidu by the key in the payload."""
        return [
            task
            for task_id, task in self.fakes[job.provider].tasks.items()
            if str(task_id) == job.task_id or str(task.body.get("payload", "")).endswith(job.key)
        ]

    def announcements(self, job: Job) -> list[FakeMessage]:
        return [
            message
            for message in self.discord.messages(job.channel_id)
            if re.search(rf"\bjob {job.id}\b", message.content) and f"<@{job.user_id}>" in message.content
        ]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with (
        FakeDiscord() as discord_fake,
        FakeHiDream(api_key=KEYS["hidream"], run_seconds=1.0) as hd,
        FakePixVerse(api_key=KEYS["pixverse"], run_seconds=1.0) as pv,
        FakeVidu(api_key=KEYS["vidu"], run_seconds=1.0) as vd,
        aiohttp.ClientSession() as session,
    ):
        built = Rig(tmp_path, discord_fake, {"hidream": hd, "pixverse": pv, "vidu": vd}, session)
        for name in PROVIDERS:
            owner = discord_fake.add_user(f"{name}-fan")
            discord_fake.add_member(discord_fake.guild, owner)
            built.owners[name] = owner
        try:
            yield built
        finally:
            if built.process is not None:
                await built.kill()
            if built.store is not None:
                await built.store.close()


async def finish_and_check(rig: Rig, expected: dict[int, JobState]) -> list[Job]:
    """Every job ends as expected and is announced exactly once, as the channel and the providers show."""
    jobs = await rig.reaches(await rig.ledger.get_jobs(list(expected)), lambda job: job.delivered, within=30)
    await rig.kill()
    for job in jobs:
        assert job.state is expected[job.id], (job.id, job.state, job.error_reason)
        events = await rig.ledger.events(job.id)
        finals = [event for event in events if event.to_state.finished and event.from_state is not event.to_state]
        assert len(finals) == 1, events
        assert [event.detail for event in events].count("delivered") == 1
        assert len(rig.tasks_of(job)) <= 1

        [announcement] = rig.announcements(job)
        assert announcement.content.startswith(f"<@{job.user_id}>")
        if job.state is JobState.SUCCEEDED:
            assert len(rig.tasks_of(job)) == 1
            assert f"your video from job {job.id} is ready" in announcement.content
            [video] = announcement.attachments
            assert job.video_url is not None
            async with rig.session.get(job.video_url) as response:
                assert video.filename == f"job-{job.id}.mp4"
                assert video.data == await response.read()
            card = rig.discord.message(job.message_id or 0)
            assert card is not None
            assert "Done" in status_of(card)
        else:
            assert announcement.attachments == []
            assert job.error_reason is not None
            assert job.error_reason in announcement.content
    assert "Traceback" not in rig.log()
    return jobs


async def test_killed_before_the_submit(rig: Rig) -> None:
    # One send per minute: each provider's second job waits in the queue when the bot is killed.
    await rig.spawn(**{f"{name.upper()}_SUBMITS_PER_MINUTE": "1" for name in PROVIDERS})
    interactions = [await rig.animate(name) for name in PROVIDERS for _ in range(2)]
    jobs = await rig.jobs_for(interactions)

    def waiting(job: Job) -> bool:
        return job.state is JobState.QUEUED and job.queue_position == 1

    async def one_sent_and_one_waiting_at_each_provider() -> bool:
        latest = await rig.ledger.get_jobs([job.id for job in jobs])
        return all(
            sorted((job.task_id is not None, waiting(job)) for job in latest if job.provider == name)
            == [(False, True), (True, False)]
            for name in PROVIDERS
        )

    await rig.until(one_sent_and_one_waiting_at_each_provider)
    await rig.kill()
    held = [job for job in await rig.ledger.get_jobs([job.id for job in jobs]) if job.task_id is None]
    assert [(job.state, job.submit_attempts) for job in held] == [(JobState.QUEUED, 0)] * 3

    await rig.spawn()
    await finish_and_check(rig, {job.id: JobState.SUCCEEDED for job in jobs})
    for name in PROVIDERS:
        assert len(rig.fakes[name].tasks) == 2
        assert rig.fakes[name].route_count(SUBMIT_ROUTE[name]) == 2


async def test_killed_after_the_submit_before_its_id_is_stored(rig: Rig) -> None:
    for name in PROVIDERS:
        # The provider makes the task, then its answer does not come before the bot dies.
        rig.fakes[name].fail(SUBMIT_ROUTE[name], "hang", seconds=60, after=True)
    await rig.spawn()
    jobs = await rig.jobs_for([await rig.animate(name) for name in PROVIDERS])

    async def created_at_every_provider() -> bool:
        return all(len(rig.fakes[name].tasks) == 1 for name in PROVIDERS)

    await rig.until(created_at_every_provider)
    at_kill = await rig.reaches(jobs, lambda job: job.state is JobState.SUBMITTING)
    assert [job.task_id for job in at_kill] == [None] * 3
    await rig.kill()

    await rig.spawn()
    by_provider = {job.provider: job for job in jobs}
    expected = {
        # PixVerse: sent again under the job's own trace id, which returns the first task.
        by_provider["pixverse"].id: JobState.SUCCEEDED,
        # Vidu: the task is found by the job key in its payload; nothing is sent again.
        by_provider["vidu"].id: JobState.SUCCEEDED,
        # HiDream: no way to find the task, so the job fails and is never sent again.
        by_provider["hidream"].id: JobState.FAILED,
    }
    done = {job.provider: job for job in await finish_and_check(rig, expected)}
    assert {name: rig.fakes[name].route_count(SUBMIT_ROUTE[name]) for name in PROVIDERS} == {
        "hidream": 1,
        "pixverse": 2,
        "vidu": 1,
    }
    for name in PROVIDERS:
        assert len(rig.fakes[name].tasks) == 1
    for name in ("pixverse", "vidu"):
        assert done[name].task_id == str(next(iter(rig.fakes[name].tasks)))
    assert done["hidream"].error_reason is not None
    assert "not sent again" in done["hidream"].error_reason


async def test_killed_while_running(rig: Rig) -> None:
    for name in PROVIDERS:
        rig.fakes[name].outcomes.append(Outcome(run_seconds=3.0))
    await rig.spawn()
    jobs = await rig.jobs_for([await rig.animate(name) for name in PROVIDERS])
    await rig.reaches(jobs, lambda job: job.state is JobState.RUNNING)
    await rig.kill()

    await rig.spawn()
    await finish_and_check(rig, {job.id: JobState.SUCCEEDED for job in jobs})
    for name in PROVIDERS:
        assert len(rig.fakes[name].tasks) == 1
        assert rig.fakes[name].route_count(SUBMIT_ROUTE[name]) == 1


@pytest.mark.parametrize(
    ("provider", "posted"),
    [
        # The announcement was posted and its answer lost: after the restart the bot finds it in the channel.
        ("hidream", True),
        ("pixverse", True),
        ("vidu", True),
        # The announcement never reached Discord: after the restart the bot posts it.
        ("vidu", False),
    ],
)
async def test_killed_after_success_before_delivery(rig: Rig, provider: str, posted: bool) -> None:
    rig.discord.drop_connection("POST", FOLLOWUP, after=posted)
    await rig.spawn()
    [job] = await rig.jobs_for([await rig.animate(provider)])
    await rig.discord.wait_until(lambda: any(r.kind == "dropped" for r in rig.discord.requests), timeout=20)
    await rig.kill()
    [at_kill] = await rig.ledger.get_jobs([job.id])
    assert (at_kill.state, at_kill.delivered) == (JobState.SUCCEEDED, False)
    assert len(rig.announcements(job)) == (1 if posted else 0)

    await rig.spawn()
    await finish_and_check(rig, {job.id: JobState.SUCCEEDED})
    assert len(rig.fakes[provider].tasks) == 1

"""Issue 10: the races and drifts of a scheduler that keeps its own copy of the world.

Every test goes through the scheduler's public API (or end to end through the fake Discord), so that it
holds for any scheduler that keeps its promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.jobs.inputs import InputStore
from bot.jobs.scheduler import JobNotCancellable, ProviderLimits, Scheduler, SchedulerSettings
from bot.store import Job, JobState, Store
from providers import GenerationRequest, Operation, VideoProvider
from providers.errors import SubmitOutcomeUnknown
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu, Outcome, Task
from tests.conftest import hidream_client, pixverse_client, vidu_client
from tests.discord_world import World, answer, world
from tests.scheduling import new_job, wait_for

__all__ = ["world"]

FAST = dict(poll_interval=0.05, max_poll_interval=0.2, off_peak_poll_interval=0.2)
NO_CAPS = {"hidream": ProviderLimits(), "pixverse": ProviderLimits(), "vidu": ProviderLimits()}
ACTIVE_LIMIT_SENTENCE = (
    "You have 1 unfinished jobs, the most this server allows at once (1); start another when one ends."
)


@dataclass
class Rig:
    """Three fake providers, clients pointed at them and one ledger; schedulers come and go over it."""

    fakes: dict[str, Any]
    providers: dict[str, VideoProvider]
    store: Store
    inputs: InputStore
    live: list[Scheduler] = field(default_factory=list)

    async def start(self, **settings: Any) -> Scheduler:
        scheduler = Scheduler(
            self.store,
            self.providers,
            self.inputs,
            settings=SchedulerSettings(**{**FAST, "limits": NO_CAPS, **settings}),
        )
        await scheduler.start()
        self.live.append(scheduler)
        return scheduler

    async def stop(self, scheduler: Scheduler) -> None:
        self.live.remove(scheduler)
        await scheduler.stop()

    async def enqueue(self, scheduler: Scheduler, provider: str, **kwargs: Any) -> Job:
        return await scheduler.enqueue(new_job(self.providers[provider], self.inputs, **kwargs))

    def tasks_of(self, provider: str, job: Job) -> list[Task]:
        """The provider's tasks that carry the job: by task id, or for Vidu by the key in the payload."""
        return [
            task
            for task_id, task in self.fakes[provider].tasks.items()
            if str(task_id) == job.task_id or str(task.body.get("payload", "")).endswith(job.key)
        ]


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, *, fakes: dict[str, dict[str, Any]] | None = None, clients: dict[str, Any] | None = None
) -> AsyncIterator[Rig]:
    fakes = fakes or {}
    clients = clients or {}
    async with (
        aiohttp.ClientSession() as session,
        FakeHiDream(api_key="hd-key", **fakes.get("hidream", {})) as hd,
        FakePixVerse(api_key="pv-key", **fakes.get("pixverse", {})) as pv,
        FakeVidu(api_key="vd-key", **fakes.get("vidu", {})) as vd,
    ):
        providers: dict[str, VideoProvider] = {
            "hidream": hidream_client(session, hd, key="hd-key", **clients),
            "pixverse": pixverse_client(session, pv, key="pv-key", **clients),
            "vidu": vidu_client(session, vd, key="vd-key", **clients),
        }
        store = await Store.open(tmp_path / "bot.db")
        built = Rig({"hidream": hd, "pixverse": pv, "vidu": vd}, providers, store, InputStore(tmp_path / "inputs"))
        try:
            yield built
        finally:
            for scheduler in list(built.live):
                await built.stop(scheduler)
            await store.close()


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def once_finished(store: Store, ids: list[int], within: float) -> list[Job]:
    """The jobs once all of them finished, or as they are when ``within`` runs out."""
    jobs: list[Job] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while True:
                found = [await store.get_job(job_id) for job_id in ids]
                jobs = [job for job in found if job is not None]
                if all(job.state.finished for job in jobs):
                    break
                await asyncio.sleep(0.05)
    return jobs


async def cpu_share_over(wall_seconds: float) -> float:
    """The share of one core this process used over a window of wall time."""
    wall, cpu = time.monotonic(), time.process_time()
    # A measuring window, not a wait for something: the process is watched while nothing is due.
    await asyncio.sleep(wall_seconds)
    return (time.process_time() - cpu) / (time.monotonic() - wall)


def age(job: Job) -> timedelta:
    assert job.accepted_at is not None
    return datetime.now(UTC) - job.accepted_at


# §1: a job waiting for room must not spin the loop.


async def test_a_requeued_job_waiting_at_a_full_provider_leaves_the_process_idle(tmp_path: Path) -> None:
    async with rig(tmp_path, fakes={"vidu": {"queue_seconds": 0}}) as world:
        world.fakes["vidu"].fail("create", "server_error", status=503)
        world.fakes["vidu"].outcomes.append(Outcome(run_seconds=5.0))
        scheduler = await world.start(
            poll_interval=0.5, max_poll_interval=1.0, limits={"vidu": ProviderLimits(max_running=1)}
        )
        waiting = await world.enqueue(scheduler, "vidu")
        holder = await world.enqueue(scheduler, "vidu")
        await wait_for(world.store, holder.id, lambda job: job.state is JobState.RUNNING)
        assert (await world.store.get_job(waiting.id)).state is JobState.QUEUED  # type: ignore[union-attr]

        share = await cpu_share_over(2.0)

        assert (await world.store.get_job(waiting.id)).state is JobState.QUEUED  # type: ignore[union-attr]
        assert share < 0.3, f"the process used {share:.0%} of a core while one job waited for room"
        done = await wait_for(world.store, waiting.id, within=15)
        assert done.state is JobState.SUCCEEDED


async def test_a_job_waiting_for_a_running_slot_a_minute_later_leaves_the_process_idle(tmp_path: Path) -> None:
    skew = [0.0]
    async with rig(tmp_path, fakes={"hidream": {"queue_seconds": 0}}) as world:
        world.fakes["hidream"].outcomes.append(Outcome(run_seconds=5.0))
        limits = ProviderLimits(max_running=1, submits_per_minute={Operation.IMAGE_TO_VIDEO: 10})
        scheduler = Scheduler(
            world.store,
            world.providers,
            world.inputs,
            settings=SchedulerSettings(poll_interval=0.5, max_poll_interval=1.0, limits={"hidream": limits}),
            clock=lambda: time.monotonic() + skew[0],
        )
        await scheduler.start()
        world.live.append(scheduler)
        holder = await world.enqueue(scheduler, "hidream")
        waiting = await world.enqueue(scheduler, "hidream")
        await wait_for(world.store, holder.id, lambda job: job.state is JobState.RUNNING)
        # A minute passes (the clock jumps) while the first job still runs.
        skew[0] = 61.0

        share = await cpu_share_over(2.0)

        assert (await world.store.get_job(waiting.id)).state is JobState.QUEUED  # type: ignore[union-attr]
        assert share < 0.3, f"the process used {share:.0%} of a core while one job waited for room"
        done = await wait_for(world.store, waiting.id, within=15)
        assert done.state is JobState.SUCCEEDED


# §2: a deadline never ends a job without a poll answered after it passed.


@pytest.mark.parametrize("provider", ["hidream", "pixverse", "vidu"])
async def test_a_job_finished_while_the_bot_was_down_succeeds_after_its_deadline(tmp_path: Path, provider: str) -> None:
    async with rig(tmp_path, fakes={provider: {"queue_seconds": 0, "run_seconds": 1.0}}) as world:
        scheduler = await world.start()
        job = await world.enqueue(scheduler, provider)
        running = await wait_for(world.store, job.id, lambda job: job.state is JobState.RUNNING)
        await world.stop(scheduler)
        assert (await world.store.get_job(job.id)).state is JobState.RUNNING  # type: ignore[union-attr]
        deadline = timedelta(seconds=1)
        [task] = world.tasks_of(provider, running)
        await until(lambda: world.fakes[provider].phase(task.task_id) == "success" and age(running) > deadline)

        await world.start(limits={provider: ProviderLimits(deadline=deadline)})
        done = await wait_for(world.store, job.id)

        assert done.state is JobState.SUCCEEDED, done.error_reason
        assert done.video_url
        assert done.task_id == running.task_id


async def test_a_job_that_finishes_in_its_last_poll_interval_succeeds(tmp_path: Path) -> None:
    # Polls come every 2 s; the task ends 2.3 s after it was created; the deadline is 2.5 s.
    async with rig(tmp_path, fakes={"pixverse": {"queue_seconds": 0, "run_seconds": 2.3}}) as world:
        scheduler = await world.start(
            poll_interval=2.0,
            max_poll_interval=2.0,
            limits={"pixverse": ProviderLimits(deadline=timedelta(seconds=2.5))},
        )
        job = await world.enqueue(scheduler, "pixverse")
        done = await wait_for(world.store, job.id, within=15)

        assert done.state is JobState.SUCCEEDED, done.error_reason
        assert done.video_url


# §3: a cancel that races a submit never forgets a task the provider holds.


async def test_a_cancel_racing_a_submit_never_forgets_a_task(tmp_path: Path) -> None:
    tries = 40
    chance = random.Random(10)
    async with rig(tmp_path, fakes={"vidu": {"queue_seconds": 30}}) as world:
        world.fakes["vidu"].fail("create", "hang", times=tries, seconds=0.2)
        scheduler = await world.start()

        async def enqueue_then_cancel(delay: float) -> int:
            job = await world.enqueue(scheduler, "vidu")
            if delay:
                await asyncio.sleep(delay)
            with contextlib.suppress(JobNotCancellable):
                await scheduler.cancel(job.id)
            return job.id

        delays = [chance.choice([0.0, 0.0, chance.uniform(0, 0.01), chance.uniform(0, 0.3)]) for _ in range(tries)]
        ids = await asyncio.gather(*(enqueue_then_cancel(delay) for delay in delays))
        jobs = await once_finished(world.store, ids, within=15)

        # Every cancel comes long before Vidu would start a task (30 s): nothing needs to stay unfinished.
        stuck = [(job.id, job.state.value) for job in jobs if not job.state.finished]
        forgotten = []
        for job in jobs:
            live = [task for task in world.tasks_of("vidu", job) if task.cancelled_at is None]
            said_charged = "charged" in (job.error_reason or "")
            if job.state is JobState.CANCELLED and live and not said_charged:
                forgotten.append((job.id, job.error_reason, [task.task_id for task in live]))
        assert (stuck, forgotten) == ([], []), (
            f"left unfinished after their cancel: {stuck}; cancelled while Vidu still holds their task: {forgotten}"
        )


# §5: a graceful stop waits for a send in flight.


async def test_a_graceful_stop_waits_for_a_slow_hidream_send(tmp_path: Path) -> None:
    async with rig(tmp_path, clients={"timeout": 10.0}) as world:
        hidream = world.fakes["hidream"]
        # HiDream creates the task at once and answers 6 s later, within the 10 s HTTP timeout.
        hidream.fail("submit_img2video", "hang", seconds=6.0, after=True)
        scheduler = await world.start()
        job = await world.enqueue(scheduler, "hidream")
        await until(lambda: len(hidream.tasks) == 1)
        await world.stop(scheduler)

        await world.start()
        done = await wait_for(world.store, job.id, within=15)

        assert done.state is JobState.SUCCEEDED, done.error_reason
        assert done.task_id in hidream.tasks
        assert hidream.route_count("submit_img2video") == 1


# §6: a Vidu create that lands late is found, not sent again.


async def test_a_vidu_create_that_lands_late_is_not_sent_twice(tmp_path: Path) -> None:
    async with rig(tmp_path, clients={"timeout": 0.3}) as world:
        vidu = world.fakes["vidu"]
        # The client gives up after 0.3 s; Vidu creates the task 2 s after the request anyway.
        vidu.fail("create", "hang", seconds=2.0, lands_late=True)
        scheduler = await world.start()
        job = await world.enqueue(scheduler, "vidu")
        done = await wait_for(world.store, job.id, within=45)
        # Every create request has landed by now (the late one included).
        await until(lambda: len(vidu.tasks) >= vidu.route_count("create"))

        assert done.state is JobState.SUCCEEDED
        assert vidu.route_count("create") == 1
        assert [str(task_id) for task_id in vidu.tasks] == [done.task_id]


# §7: admission holds when the job is written.


@pytest.mark.world(run_seconds=30, settings={"max_active_jobs_per_user": 1})
async def test_eight_parallel_commands_from_one_member_create_one_job(world: World) -> None:
    async with world.running():
        interactions = await asyncio.gather(*(world.animate("hidream") for _ in range(8)))

        def settled(interaction: Any) -> bool:
            card = world.discord.original(interaction)
            return bool(answer(world, interaction)) or (card is not None and bool(card.embeds))

        await world.discord.wait_until(lambda: all(settled(interaction) for interaction in interactions), timeout=20)
        jobs = await world.store.jobs_of_user(world.discord.interaction(interactions[0]).user_id, limit=100)
        answers = [answer(world, interaction) for interaction in interactions]

        assert len(jobs) == 1, f"{len(jobs)} jobs were created for a limit of one"
        assert answers.count(ACTIVE_LIMIT_SENTENCE) == 7


async def test_the_vidu_fake_lands_a_create_after_its_client_gave_up(tmp_path: Path) -> None:
    async with rig(tmp_path, clients={"timeout": 0.3}) as world:
        vidu = world.fakes["vidu"]
        vidu.fail("create", "hang", seconds=1.0, lands_late=True)
        request = new_job(world.providers["vidu"], world.inputs)
        with pytest.raises(SubmitOutcomeUnknown):
            await world.providers["vidu"].submit(
                GenerationRequest(Operation.IMAGE_TO_VIDEO, request.params, world.inputs.load(request.media)),
                idempotency_key=request.key,
            )
        assert vidu.tasks == {}
        await until(lambda: len(vidu.tasks) == 1)

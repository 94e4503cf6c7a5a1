"""The scheduler against the fake providers: every job reaches exactly one final state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.jobs.inputs import InputStore
from bot.jobs.scheduler import JobNotCancellable, ProviderLimits, Scheduler, SchedulerSettings
from bot.store import Job, JobState, Store
from providers import ErrorKind, Operation, VideoProvider
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu, Outcome
from tests.conftest import hidream_client, pixverse_client, vidu_client
from tests.scheduling import Recorder, new_job, wait_for

FAST = dict(poll_interval=0.05, max_poll_interval=0.2, off_peak_poll_interval=0.2)


@dataclass
class World:
    """Three fake providers, their clients, a ledger, and a running scheduler."""

    hidream_fake: FakeHiDream
    pixverse_fake: FakePixVerse
    vidu_fake: FakeVidu
    providers: dict[str, VideoProvider]
    store: Store
    inputs: InputStore
    scheduler: Scheduler
    recorder: Recorder
    path: Path

    def fake(self, name: str) -> Any:
        return {"hidream": self.hidream_fake, "pixverse": self.pixverse_fake, "vidu": self.vidu_fake}[name]

    async def enqueue(self, provider: str, **kwargs: Any) -> int:
        job = await self.scheduler.enqueue(new_job(self.providers[provider], self.inputs, **kwargs))
        return job.id

    async def restart(self, **settings: Any) -> None:
        await self.scheduler.stop()
        self.scheduler = Scheduler(self.store, self.providers, self.inputs, SchedulerSettings(**{**FAST, **settings}))
        self.recorder = Recorder()
        self.scheduler.subscribe(self.recorder)
        await self.scheduler.start()


@pytest.fixture
async def world(tmp_path: Path, session: aiohttp.ClientSession, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    marker = request.node.get_closest_marker("scheduler")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    fake_options: dict[str, Any] = options.pop("fakes", {})
    client_options: dict[str, Any] = options.pop("clients", {})
    async with (
        FakeHiDream(api_key="hd-key", **fake_options.get("hidream", {})) as hd,
        FakePixVerse(api_key="pv-key", **fake_options.get("pixverse", {})) as pv,
        FakeVidu(api_key="vd-key", **fake_options.get("vidu", {})) as vd,
    ):
        providers: dict[str, VideoProvider] = {
            "hidream": hidream_client(session, hd, key="hd-key", **client_options),
            "pixverse": pixverse_client(session, pv, key="pv-key", **client_options),
            "vidu": vidu_client(session, vd, key="vd-key", **client_options),
        }
        path = tmp_path / "bot.db"
        store = await Store.open(path)
        inputs = InputStore(tmp_path / "inputs")
        scheduler = Scheduler(store, providers, inputs, SchedulerSettings(**{**FAST, **options}))
        recorder = Recorder()
        scheduler.subscribe(recorder)
        await scheduler.start()
        built = World(hd, pv, vd, providers, store, inputs, scheduler, recorder, path)
        try:
            yield built
        finally:
            await built.scheduler.stop()
            await store.close()


@pytest.mark.parametrize("provider", ["hidream", "pixverse", "vidu"])
async def test_a_job_goes_from_queue_to_success(world: World, provider: str) -> None:
    job_id = await world.enqueue(provider)
    job = await wait_for(world.store, job_id)

    assert job.state is JobState.SUCCEEDED
    assert job.video_url
    assert job.task_id
    assert job.progress == 1.0
    assert job.accepted_at is not None
    assert job.finished_at is not None
    assert job.submit_attempts == 1
    assert len(world.fake(provider).tasks) == 1
    events = [(event.from_state, event.to_state) for event in await world.store.events(job_id)]
    assert events == [
        (None, JobState.QUEUED),
        (JobState.QUEUED, JobState.SUBMITTING),
        (JobState.SUBMITTING, JobState.RUNNING),
        (JobState.RUNNING, JobState.SUCCEEDED),
    ]
    await asyncio.sleep(0.05)
    assert world.recorder.states(job_id)[-3:] == [JobState.SUBMITTING, JobState.RUNNING, JobState.SUCCEEDED]


async def test_stylization_goes_through_its_own_endpoints(world: World) -> None:
    job_id = await world.enqueue("hidream", operation=Operation.STYLIZE, style="anime")
    job = await wait_for(world.store, job_id)
    assert job.state is JobState.SUCCEEDED
    assert world.hidream_fake.route_count("submit_video_edit") == 1
    assert {r.path for r in world.hidream_fake.requests_for("batch_query")} == {
        "/api-pub/gw/v2/video/video_edit/async/results/batch"
    }


@pytest.mark.scheduler(limits={"hidream": ProviderLimits(), "pixverse": ProviderLimits(), "vidu": ProviderLimits()})
async def test_many_jobs_across_three_providers_at_once(world: World) -> None:
    ids = [await world.enqueue(name) for name in ("hidream", "pixverse", "vidu") for _ in range(15)]
    jobs = [await wait_for(world.store, job_id, within=20) for job_id in ids]
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    for name in ("hidream", "pixverse", "vidu"):
        assert len(world.fake(name).tasks) == 15
    # HiDream answers many tasks per request; the others one task per request.
    assert world.hidream_fake.route_count("batch_query") < world.pixverse_fake.route_count("result")


@pytest.mark.scheduler(
    limits={"vidu": ProviderLimits(max_running=2)}, fakes={"vidu": {"queue_seconds": 0, "run_seconds": 1.0}}
)
async def test_a_provider_cap_keeps_jobs_queued_with_their_position(world: World) -> None:
    ids = [await world.enqueue("vidu") for _ in range(5)]
    await wait_for(world.store, ids[1], lambda job: job.state is JobState.RUNNING)
    queued = [await world.store.get_job(job_id) for job_id in ids[2:]]
    assert [job.state for job in queued if job] == [JobState.QUEUED] * 3
    assert [job.queue_position for job in queued if job] == [1, 2, 3]
    assert len(world.vidu_fake.tasks) == 2
    jobs = [await wait_for(world.store, job_id, within=15) for job_id in ids]
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    tasks = list(world.vidu_fake.tasks.values())
    overlapping = [sum(1 for other in tasks if other.created_at <= task.created_at < other.end_at) for task in tasks]
    assert max(overlapping) <= 2


@pytest.mark.scheduler(
    limits={"hidream": ProviderLimits(submits_per_minute={Operation.STYLIZE: 2})},
    fakes={"hidream": {"run_seconds": 0.1}},
)
async def test_submits_per_minute_are_capped(world: World) -> None:
    ids = [await world.enqueue("hidream", operation=Operation.STYLIZE, style="anime") for _ in range(3)]
    await wait_for(world.store, ids[1])
    await asyncio.sleep(0.3)
    third = await world.store.get_job(ids[2])
    assert third is not None
    assert (third.state, third.queue_position) == (JobState.QUEUED, 1)
    assert world.hidream_fake.route_count("submit_video_edit") == 2


@pytest.mark.parametrize(("provider", "route"), [("pixverse", "generate"), ("vidu", "create")])
async def test_a_concurrency_refusal_puts_the_job_back_in_the_queue(world: World, provider: str, route: str) -> None:
    world.fake(provider).fail(route, "concurrency")
    job_id = await world.enqueue(provider)
    job = await wait_for(world.store, job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.submit_attempts == 2
    states = [event.to_state for event in await world.store.events(job_id)]
    assert states[:5] == [JobState.QUEUED, JobState.SUBMITTING, JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING]
    assert len(world.fake(provider).tasks) == 1


@pytest.mark.scheduler(fakes={"pixverse": {"replay_refusals": True}})
async def test_a_pixverse_refusal_replayed_for_its_trace_id_does_not_block_the_next_attempt(world: World) -> None:
    world.pixverse_fake.fail("generate", "concurrency")
    job_id = await world.enqueue("pixverse")
    job = await wait_for(world.store, job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.submit_attempts == 2
    trace_ids = [request.headers["Ai-trace-id"] for request in world.pixverse_fake.requests_for("generate")]
    assert len(trace_ids) == 2
    assert trace_ids[0] != trace_ids[1]


async def test_a_short_outage_at_submit_is_retried(world: World) -> None:
    world.hidream_fake.fail("submit_img2video", "server_error", status=503, times=2)
    job = await wait_for(world.store, await world.enqueue("hidream"))
    assert (job.state, job.submit_attempts) == (JobState.SUCCEEDED, 3)
    assert len(world.hidream_fake.tasks) == 1


@pytest.mark.parametrize(
    ("provider", "route", "kind", "state", "error_kind"),
    [
        ("pixverse", "generate", "moderation", JobState.REJECTED, ErrorKind.MODERATION),
        ("vidu", "create", "moderation", JobState.REJECTED, ErrorKind.MODERATION),
        ("hidream", "submit_img2video", "moderation", JobState.REJECTED, ErrorKind.MODERATION),
        ("pixverse", "generate", "unauthorized", JobState.FAILED, ErrorKind.CREDENTIALS),
        ("vidu", "create", "business_error", JobState.FAILED, ErrorKind.INVALID_REQUEST),
    ],
)
async def test_a_refused_submit_ends_the_job_with_a_reason(
    world: World, provider: str, route: str, kind: str, state: JobState, error_kind: ErrorKind
) -> None:
    world.fake(provider).fail(route, kind)
    job = await wait_for(world.store, await world.enqueue(provider))
    assert (job.state, job.error_kind) == (state, error_kind.value)
    assert job.error_reason
    assert job.error_reason.endswith(".")
    assert job.submit_attempts == 1
    assert not world.fake(provider).tasks


@pytest.mark.parametrize(("outcome", "state"), [("failed", JobState.FAILED), ("moderation", JobState.REJECTED)])
@pytest.mark.parametrize("provider", ["hidream", "pixverse", "vidu"])
async def test_a_job_that_fails_at_the_provider_ends_so(
    world: World, provider: str, outcome: str, state: JobState
) -> None:
    world.fake(provider).outcomes.append(Outcome(outcome))
    job = await wait_for(world.store, await world.enqueue(provider))
    assert job.state is state
    assert job.error_reason
    assert job.video_url is None


@pytest.mark.parametrize("provider", ["hidream", "pixverse", "vidu"])
@pytest.mark.parametrize("kind", ["server_error", "malformed", "rate_limited"])
async def test_poll_faults_do_not_end_the_job(world: World, provider: str, kind: str) -> None:
    route = {"hidream": "batch_query", "pixverse": "result", "vidu": "creations"}[provider]
    world.fake(provider).fail(route, kind, times=4, **({"retry_after": 0} if kind == "rate_limited" else {}))
    job = await wait_for(world.store, await world.enqueue(provider))
    assert job.state is JobState.SUCCEEDED


@pytest.mark.scheduler(clients={"timeout": 0.3})
async def test_a_hanging_poll_does_not_end_the_job(world: World) -> None:
    world.vidu_fake.fail("creations", "hang", times=3, seconds=2)
    job = await wait_for(world.store, await world.enqueue("vidu"), within=15)
    assert job.state is JobState.SUCCEEDED


# A submit whose answer is lost: the task exists at the provider, the bot does not know its id.


@pytest.mark.scheduler(clients={"timeout": 0.3})
@pytest.mark.parametrize(("provider", "route"), [("pixverse", "generate"), ("vidu", "create")])
async def test_a_lost_submit_answer_is_recovered_without_a_second_task(world: World, provider: str, route: str) -> None:
    world.fake(provider).fail(route, "hang", seconds=2, after=True)
    job = await wait_for(world.store, await world.enqueue(provider), within=15)
    assert job.state is JobState.SUCCEEDED
    assert len(world.fake(provider).tasks) == 1
    assert job.task_id in {str(task_id) for task_id in world.fake(provider).tasks}


@pytest.mark.scheduler(clients={"timeout": 0.3})
async def test_a_lost_hidream_submit_is_not_sent_again(world: World) -> None:
    world.hidream_fake.fail("submit_img2video", "hang", seconds=2, after=True)
    job = await wait_for(world.store, await world.enqueue("hidream"), within=15)
    assert job.state is JobState.FAILED
    assert job.error_reason is not None
    assert "was not sent again" in job.error_reason
    assert world.hidream_fake.route_count("submit_img2video") == 1


@pytest.mark.scheduler(limits={"hidream": ProviderLimits(stall=timedelta(seconds=0.5))})
async def test_a_stalled_job_times_out(world: World) -> None:
    world.hidream_fake.outcomes.append(Outcome("stall", queue_seconds=0, run_seconds=0.1))
    job = await wait_for(world.store, await world.enqueue("hidream"))
    assert job.state is JobState.TIMED_OUT
    assert job.error_reason is not None
    assert "made no progress" in job.error_reason


@pytest.mark.scheduler(
    limits={"vidu": ProviderLimits(deadline=timedelta(seconds=0.5))},
    fakes={"vidu": {"run_seconds": 30, "queue_seconds": 30}},
)
async def test_a_job_past_its_deadline_times_out_and_is_cancelled_at_the_provider(world: World) -> None:
    job = await wait_for(world.store, await world.enqueue("vidu"))
    assert job.state is JobState.TIMED_OUT
    assert job.error_reason is not None
    assert "did not finish within" in job.error_reason
    assert world.vidu_fake.route_count("cancel") == 1
    [task] = world.vidu_fake.tasks.values()
    assert task.cancelled_at is not None


@pytest.mark.scheduler(queue_timeout=timedelta(seconds=0.3), limits={"vidu": ProviderLimits(max_running=0)})
async def test_a_job_queued_too_long_times_out(world: World) -> None:
    job = await wait_for(world.store, await world.enqueue("vidu"))
    assert job.state is JobState.TIMED_OUT
    assert not world.vidu_fake.tasks


# Cancel in each state.


@pytest.mark.scheduler(limits={"vidu": ProviderLimits(max_running=0)})
async def test_cancel_a_queued_job(world: World) -> None:
    job_id = await world.enqueue("vidu")
    job = await world.scheduler.cancel(job_id)
    assert (job.state, job.error_kind) == (JobState.CANCELLED, "cancelled")
    assert job.error_reason == "Cancelled before it was sent."
    await asyncio.sleep(0.1)
    assert not world.vidu_fake.tasks


@pytest.mark.scheduler(fakes={"vidu": {"queue_seconds": 30}})
async def test_cancel_a_running_job_where_the_provider_can_cancel(world: World) -> None:
    job_id = await world.enqueue("vidu")
    await wait_for(world.store, job_id, lambda job: job.state is JobState.RUNNING)
    job = await world.scheduler.cancel(job_id)
    assert job.state is JobState.CANCELLED
    assert job.error_reason == "Cancelled; Vidu stopped the job."
    assert world.vidu_fake.route_count("cancel") == 1


@pytest.mark.scheduler(fakes={"vidu": {"queue_seconds": 0, "run_seconds": 30}})
async def test_cancel_a_started_vidu_job_stops_tracking_and_says_so(world: World) -> None:
    job_id = await world.enqueue("vidu")
    await wait_for(world.store, job_id, lambda job: job.state is JobState.RUNNING and job.started_at is not None)
    job = await world.scheduler.cancel(job_id)
    assert job.state is JobState.CANCELLED
    assert job.error_reason is not None
    assert "may still be charged" in job.error_reason


@pytest.mark.scheduler(fakes={"hidream": {"run_seconds": 30}})
async def test_cancel_where_the_api_has_no_cancel_stops_tracking(world: World) -> None:
    job_id = await world.enqueue("hidream")
    await wait_for(world.store, job_id, lambda job: job.state is JobState.RUNNING)
    job = await world.scheduler.cancel(job_id)
    assert job.state is JobState.CANCELLED
    assert job.error_reason is not None
    assert "HiDream cannot stop a job once started" in job.error_reason
    polls = world.hidream_fake.route_count("batch_query")
    await asyncio.sleep(0.3)
    assert world.hidream_fake.route_count("batch_query") == polls


@pytest.mark.scheduler(fakes={"vidu": {"queue_seconds": 30}})
async def test_cancel_while_submitting_cancels_once_the_provider_answers(world: World) -> None:
    world.vidu_fake.fail("create", "hang", seconds=0.5, after=True)
    job_id = await world.enqueue("vidu")
    await wait_for(world.store, job_id, lambda job: job.state is JobState.SUBMITTING)
    requested = await world.scheduler.cancel(job_id)
    assert requested.cancel_requested
    job = await wait_for(world.store, job_id)
    assert job.state is JobState.CANCELLED
    assert world.vidu_fake.route_count("cancel") == 1


async def test_a_finished_job_cannot_be_cancelled(world: World) -> None:
    job_id = await world.enqueue("pixverse")
    await wait_for(world.store, job_id)
    with pytest.raises(JobNotCancellable, match="already ended"):
        await world.scheduler.cancel(job_id)


# Restarts.


@pytest.mark.scheduler(fakes={"vidu": {"run_seconds": 1.0}, "hidream": {"run_seconds": 1.0}})
async def test_a_restart_resumes_every_unfinished_job(world: World) -> None:
    running = [await world.enqueue("vidu"), await world.enqueue("hidream")]
    for job_id in running:
        await wait_for(world.store, job_id, lambda job: job.state is JobState.RUNNING)
    await world.restart()
    jobs = [await wait_for(world.store, job_id) for job_id in running]
    assert [job.state for job in jobs] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert len(world.vidu_fake.tasks) == len(world.hidream_fake.tasks) == 1


async def test_finished_but_unannounced_jobs_are_published_again_after_a_restart(world: World) -> None:
    first = await world.enqueue("pixverse")
    second = await world.enqueue("pixverse")
    await wait_for(world.store, first)
    await wait_for(world.store, second)
    assert await world.scheduler.mark_delivered(first)
    assert not await world.scheduler.mark_delivered(first)
    await world.restart()
    await asyncio.sleep(0.1)
    republished = {job.id for job in world.recorder.updates}
    assert republished == {second}


@pytest.mark.scheduler(
    limits={"vidu": ProviderLimits(max_running=1)}, fakes={"vidu": {"queue_seconds": 0, "run_seconds": 0.6}}
)
async def test_the_queue_is_fair_between_people(world: World) -> None:
    alice = [await world.enqueue("vidu", user_id=1) for _ in range(4)]
    await wait_for(world.store, alice[0], lambda job: job.state is JobState.RUNNING)
    bob = await world.enqueue("vidu", user_id=2)
    carol = await world.enqueue("vidu", user_id=3)
    await asyncio.sleep(0.1)
    positions = {job_id: (await world.store.get_job(job_id)).queue_position for job_id in [*alice[1:], bob, carol]}  # type: ignore[union-attr]
    # Alice already has a job running, so Bob and Carol go first, then Alice's, one turn each.
    assert [positions[bob], positions[carol]] == [1, 2]
    assert [positions[job_id] for job_id in alice[1:]] == [3, 4, 5]
    jobs = [await wait_for(world.store, job_id, within=20) for job_id in [*alice, bob, carol]]
    started = sorted(jobs, key=lambda job: job.accepted_at or job.created_at)
    assert [job.user_id for job in started] == [1, 2, 3, 1, 1, 1]


# The submit retry limit: a job whose sends keep being refused for a passing reason gives up in the end.


@pytest.mark.scheduler(max_submit_attempts=4)
async def test_a_job_refused_every_time_is_sent_max_submit_attempts_times_then_fails(world: World) -> None:
    world.vidu_fake.fail("create", "server_error", status=503, times=50)
    job = await wait_for(world.store, await world.enqueue("vidu"), within=15)

    assert world.vidu_fake.route_count("create") == 4
    assert (job.state, job.submit_attempts, job.error_kind) == (JobState.FAILED, 4, ErrorKind.UNAVAILABLE.value)
    assert job.error_reason is not None
    assert job.error_reason.startswith("Vidu stayed unavailable after several tries")
    assert not world.vidu_fake.tasks


# Off-peak Vidu jobs may take 48 hours: they get their own deadline.


class SkewedClock:
    """The ledger's clock: real time plus an offset a test pushes forward (hours pass in an instant)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def test_an_off_peak_vidu_job_is_held_to_the_off_peak_deadline_not_the_normal_one(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    clock = SkewedClock()
    limits = ProviderLimits(deadline=timedelta(minutes=60), off_peak_deadline=timedelta(hours=49))
    async with FakeVidu(api_key="vd-key", off_peak_seconds=3600) as fake:
        providers: dict[str, VideoProvider] = {"vidu": vidu_client(session, fake, key="vd-key")}
        store = await Store.open(tmp_path / "bot.db", now=clock)
        inputs = InputStore(tmp_path / "inputs")
        scheduler = Scheduler(store, providers, inputs, SchedulerSettings(**FAST, limits={"vidu": limits}))
        await scheduler.start()
        try:
            new = new_job(providers["vidu"], inputs, model="viduq2", off_peak=True)
            job_id = (await scheduler.enqueue(new)).id
            running = await wait_for(store, job_id, lambda job: job.state is JobState.RUNNING)
            assert fake.tasks[running.task_id].body["off_peak"] is True

            async def polls_answered_after_the_jump(hours: float) -> Job:
                """The job once a poll answered after the jump was applied: the second poll after the jump is
                claimed only after the first was applied (a job's polls hold its lease one at a time)."""
                clock.offset = timedelta(hours=hours)
                seen = fake.route_count("creations")
                return await wait_for(
                    store, job_id, lambda job: job.state.finished or fake.route_count("creations") >= seen + 2
                )

            past_the_normal_deadline = await polls_answered_after_the_jump(2)
            assert past_the_normal_deadline.state is JobState.RUNNING, past_the_normal_deadline.error_reason

            past_the_off_peak_deadline = await polls_answered_after_the_jump(50)
            assert past_the_off_peak_deadline.state is JobState.TIMED_OUT
            assert past_the_off_peak_deadline.error_reason == (
                "Vidu did not finish within 49 hours, so the bot stopped waiting."
            )
        finally:
            await scheduler.stop()
            await store.close()


@pytest.mark.scheduler(clients={"timeout": 0.3})
async def test_a_send_check_the_provider_refuses_ends_the_job_with_a_reason(world: World) -> None:
    world.vidu_fake.fail("create", "hang", seconds=2, after=True)
    world.vidu_fake.fail("tasks", "unauthorized", times=10)
    job = await wait_for(world.store, await world.enqueue("vidu"), within=15)
    assert (job.state, job.error_kind) == (JobState.FAILED, ErrorKind.CREDENTIALS.value)
    assert job.error_reason == "Vidu refused the bot's API key; ask the bot's owner to check it."


@pytest.mark.scheduler(poll_interval=0.4, max_poll_interval=0.8)
async def test_a_short_outage_at_submit_backs_off_before_each_new_send(world: World) -> None:
    world.hidream_fake.fail("submit_img2video", "server_error", status=503, times=2)
    job_id = await world.enqueue("hidream")
    job = await wait_for(world.store, job_id)
    assert (job.state, job.submit_attempts) == (JobState.SUCCEEDED, 3)
    events = sorted(await world.store.events(job_id), key=lambda event: event.at)
    requeued = [event.at for event in events if event.to_state is JobState.QUEUED and event.from_state is not None]
    sent = [event.at for event in events if event.to_state is JobState.SUBMITTING]
    gaps = [(again - back).total_seconds() for back, again in zip(requeued, sent[1:], strict=True)]
    # Each wait doubles from the poll interval; the ledger stamps the requeue a moment after it set the wait.
    assert gaps[0] >= 0.4 * 0.9
    assert gaps[1] >= 0.8 * 0.9
    # The ledger keeps when the last requeue allowed the job to be sent again.
    assert job.not_before is not None
    assert requeued[-1] < job.not_before <= sent[-1]

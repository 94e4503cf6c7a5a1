"""One scheduler for every job: submits when a provider has room, polls, enforces deadlines, resumes.

The tracker knows jobs and providers, and nothing of Discord: it publishes each visible change of a
job to its subscribers (the Discord side) and is told when a finished job has been announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.background import TaskSet
from bot.inputs import InputMissing, InputStore
from bot.store import InvalidTransition, Job, JobState, NewJob, Store
from providers import (
    ErrorKind,
    GenerationRequest,
    Operation,
    ProviderError,
    Submission,
    TaskRef,
    TaskState,
    TaskStatus,
    VideoProvider,
)
from providers.errors import (
    CancelNotPossible,
    ModerationRejected,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)

log = logging.getLogger(__name__)

Subscriber = Callable[[Job], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class ProviderLimits:
    """How hard the tracker may push one provider, and how long it waits for it."""

    #: Jobs submitting or running at the provider at once; None for no cap.
    max_running: int | None = None
    #: Submits per rolling minute, per operation; an operation not listed has no cap.
    submits_per_minute: Mapping[Operation, int] = field(default_factory=dict)
    #: From acceptance to a finished video.
    deadline: timedelta = timedelta(minutes=30)
    #: For off-peak jobs, which the provider may hold for up to 48 hours.
    off_peak_deadline: timedelta = timedelta(hours=49)
    #: No change of progress for this long ends the job; only where the provider reports progress.
    stall: timedelta | None = None


DEFAULT_LIMITS: Mapping[str, ProviderLimits] = {
    "hidream": ProviderLimits(
        submits_per_minute={Operation.IMAGE_TO_VIDEO: 10, Operation.STYLIZE: 2},
        deadline=timedelta(minutes=30),
        stall=timedelta(minutes=10),
    ),
    "pixverse": ProviderLimits(deadline=timedelta(minutes=30)),
    "vidu": ProviderLimits(max_running=5, deadline=timedelta(minutes=60)),
}


@dataclass(frozen=True)
class TrackerSettings:
    """Timing and limits of the scheduler."""

    poll_interval: float = 5.0
    max_poll_interval: float = 60.0
    off_peak_poll_interval: float = 300.0
    #: Status queries in flight at once per provider (for providers polled one task at a time).
    max_polls_in_flight: int = 8
    #: Sends of one job refused for a passing reason (outage, rate limit) before it fails.
    max_submit_attempts: int = 8
    #: A job still queued after this long ends as timed out.
    queue_timeout: timedelta = timedelta(hours=6)
    limits: Mapping[str, ProviderLimits] = field(default_factory=lambda: dict(DEFAULT_LIMITS))

    def limits_for(self, provider: str) -> ProviderLimits:
        return self.limits.get(provider, ProviderLimits())


@dataclass
class TrackerStats:
    """Counters for operators and the benchmark."""

    poll_rounds: Counter[str] = field(default_factory=Counter)
    poll_requests: Counter[str] = field(default_factory=Counter)
    tasks_polled: Counter[str] = field(default_factory=Counter)


class JobNotCancellable(Exception):
    """The job already finished; the message says how."""


@dataclass
class _Running:
    """What the scheduler keeps in memory about a job running at its provider."""

    job_id: int
    provider: str
    user_id: int
    task: TaskRef
    accepted_at: datetime
    next_poll: float
    off_peak: bool
    progress: float | None = None
    provider_status: str | None = None
    changed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    polls: int = 0
    failures: int = 0
    started: bool = False


class Tracker:
    """Drives every unfinished job to one finished state."""

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, VideoProvider],
        inputs: InputStore,
        settings: TrackerSettings | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.store = store
        self.providers = providers
        self.inputs = inputs
        self.settings = settings or TrackerSettings()
        self._clock = clock
        self._subscribers: list[Subscriber] = []
        #: Per provider, the queued job ids (order of arrival is in ``_arrival``).
        self._queued: dict[str, dict[int, None]] = {}
        self._arrival: dict[int, int] = {}
        self._arrivals = itertools.count()
        #: Who asked, for queued and submitting jobs: the queue is fair between people.
        self._job_user: dict[int, int] = {}
        self._order: dict[str, list[int]] = {}
        #: Per provider, how many jobs each person with work there has had sent.
        self._served: dict[str, Counter[int]] = {}
        self._positions: dict[int, int] = {}
        self._operations: dict[int, Operation] = {}
        self._not_before: dict[int, float] = {}
        self._submitting: dict[str, set[int]] = {}
        self._running: dict[int, _Running] = {}
        self._running_count: Counter[str] = Counter()
        #: Per provider, (when, sequence, job id) of every scheduled poll; stale entries are skipped.
        self._poll_heaps: dict[str, list[tuple[float, int, int]]] = {}
        self._poll_sequence = itertools.count()
        self._poll_slots: dict[str, asyncio.Semaphore] = {}
        self._submit_times: dict[tuple[str, Operation], deque[float]] = {}
        self._cooldown: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._outbox: asyncio.Queue[Job] = asyncio.Queue()
        self._background = TaskSet(on_done=lambda: self._wake.set())
        self._loop_task: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_deadline_check = 0.0
        self.first_poll_at: float | None = None
        self.stats = TrackerStats()

    # Lifecycle.

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with the job after every visible change, in order, one at a time."""
        self._subscribers.append(subscriber)

    async def start(self) -> None:
        """Resume every unfinished job from the ledger and start scheduling."""
        now = self._clock()
        running: list[Job] = []
        for job in await self.store.unfinished_jobs():
            if job.state is JobState.QUEUED:
                self._enqueue(job)
            elif job.state is JobState.SUBMITTING:
                self._submitting.setdefault(job.provider, set()).add(job.id)
                self._background.spawn(self._recover(job.id), f"recover job {job.id}")
            else:
                running.append(job)
        # The first check of resumed jobs is spread over one interval (the first at once), so that
        # thousands of them do not fall due together and stay bunched up afterwards.
        for index, job in enumerate(running):
            self._track(job, next_poll=now + self.settings.poll_interval * index / len(running))
        for job in await self.store.undelivered_jobs():
            self._outbox.put_nowait(job)
        self._publisher = asyncio.create_task(self._publish_forever(), name="tracker publisher")
        self._loop_task = asyncio.create_task(self._run(), name="tracker")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop scheduling; sends in flight get ``grace`` seconds to finish, the rest resume at next start."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        await self._background.drain(grace)
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)

    # What the Discord side calls.

    async def enqueue(self, new: NewJob) -> Job:
        """Record a new job and queue it."""
        job = await self.store.create_job(new)
        self._enqueue(job)
        self._update_positions(job.provider)
        self._wake.set()
        return job

    async def mark_delivered(self, job_id: int) -> bool:
        """Record that a finished job was announced; False when it already was."""
        return await self.store.mark_delivered(job_id)

    async def cancel(self, job_id: int) -> Job:
        """Cancel a job wherever it is. Raises JobNotCancellable when it already finished."""
        job = await self._get(job_id)
        if job.state.finished:
            raise JobNotCancellable(f"Job {job_id} already ended ({job.state.value.replace('_', ' ')}).")
        if job.state is JobState.QUEUED:
            self._dequeue(job)
            try:
                return await self._finish(job, JobState.CANCELLED, ErrorKind.CANCELLED, "Cancelled before it was sent.")
            except InvalidTransition:
                job = await self._get(job_id)
        if job.state is JobState.SUBMITTING:
            # The send is in flight; the job is cancelled as soon as the provider answers.
            await self.store.update_jobs({job.id: {"cancel_requested": True}})
            return await self._get(job_id)
        if job.state is JobState.RUNNING:
            return await self._cancel_running(job)
        raise JobNotCancellable(f"Job {job_id} already ended ({job.state.value.replace('_', ' ')}).")

    @property
    def running(self) -> bool:
        """Whether the scheduler loop is alive."""
        return self._loop_task is not None and not self._loop_task.done()

    # The scheduler.

    async def _run(self) -> None:
        while not self._stopping:
            try:
                self._dispatch_submits()
                self._dispatch_polls()
                await self._enforce_deadlines()
            except Exception:
                log.exception("The tracker's scheduling pass failed; it carries on")
            delay = self._seconds_to_next_event()
            self._wake.clear()
            if delay > 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _seconds_to_next_event(self) -> float:
        now = self._clock()
        due = [self._next_deadline_check]
        due += [heap[0][0] for heap in self._poll_heaps.values() if heap]
        due += [moment for moment in self._not_before.values()]
        due += [moment for moment in self._cooldown.values() if moment > now]
        for (provider, _), times in self._submit_times.items():
            if self._queued.get(provider) and times:
                due.append(times[0] + 60)
        return min(1.0, max(0.0, min(due) - now))

    # Submitting.

    def _enqueue(self, job: Job, *, arrival: int | None = None) -> None:
        self._queued.setdefault(job.provider, {})[job.id] = None
        self._arrival[job.id] = next(self._arrivals) if arrival is None else arrival
        self._job_user[job.id] = job.user_id
        self._order.pop(job.provider, None)
        self._operations[job.id] = Operation(job.operation)
        if job.not_before is not None:
            wait = (job.not_before - datetime.now(UTC)).total_seconds()
            if wait > 0:
                self._not_before[job.id] = self._clock() + wait

    def _dequeue(self, job: Job) -> None:
        self._queued.get(job.provider, {}).pop(job.id, None)
        self._order.pop(job.provider, None)
        self._arrival.pop(job.id, None)
        self._job_user.pop(job.id, None)
        self._not_before.pop(job.id, None)
        self._positions.pop(job.id, None)
        self._operations.pop(job.id, None)

    def _dispatch_submits(self) -> None:
        if self._stopping:
            return
        now = self._clock()
        for provider_name, queue in self._queued.items():
            if not queue or self._cooldown.get(provider_name, 0.0) > now:
                continue
            limits = self.settings.limits_for(provider_name)
            busy = len(self._submitting.get(provider_name, ())) + self._running_count[provider_name]
            room = limits.max_running - busy if limits.max_running is not None else len(queue)
            started = False
            for job_id in self._fair_order(provider_name):
                if room <= 0:
                    break
                if self._not_before.get(job_id, 0.0) > now:
                    continue
                operation = self._operations[job_id]
                if not self._take_submit_slot(provider_name, operation, limits, now):
                    continue
                del queue[job_id]
                self._order.pop(provider_name, None)
                self._served.setdefault(provider_name, Counter())[self._job_user.get(job_id, 0)] += 1
                self._not_before.pop(job_id, None)
                self._positions.pop(job_id, None)
                self._operations.pop(job_id, None)
                self._submitting.setdefault(provider_name, set()).add(job_id)
                self._background.spawn(self._submit(job_id), f"submit job {job_id}")
                room -= 1
                started = True
            if started:
                self._update_positions(provider_name)

    def _take_submit_slot(self, provider: str, operation: Operation, limits: ProviderLimits, now: float) -> bool:
        cap = limits.submits_per_minute.get(operation)
        if cap is None:
            return True
        times = self._submit_times.setdefault((provider, operation), deque())
        while times and times[0] <= now - 60:
            times.popleft()
        if len(times) >= cap:
            return False
        times.append(now)
        return True

    def _fair_order(self, provider: str) -> list[int]:
        """The provider's queue in the order it is served: round-robin between people.

        A job's turn is how many jobs its owner already got sent to this provider in the current run of
        their jobs, plus how many of their queued jobs are ahead of it; ties go to the earlier arrival.
        One person's twenty jobs therefore never hold up everyone else.
        """
        cached = self._order.get(provider)
        if cached is not None:
            return cached
        queued = sorted(self._queued.get(provider, {}), key=self._arrival.__getitem__)
        present = {self._job_user.get(job_id, 0) for job_id in queued}
        present.update(tracked.user_id for tracked in self._running.values() if tracked.provider == provider)
        present.update(self._job_user.get(job_id, 0) for job_id in self._submitting.get(provider, ()))
        served = self._served.setdefault(provider, Counter())
        for user in set(served) - present:
            # Someone with nothing left here starts afresh next time.
            del served[user]
        seen: Counter[int] = Counter()
        keyed = []
        for job_id in queued:
            user = self._job_user.get(job_id, 0)
            keyed.append((served[user] + seen[user], self._arrival[job_id], job_id))
            seen[user] += 1
        order = [job_id for _, _, job_id in sorted(keyed)]
        self._order[provider] = order
        return order

    def _update_positions(self, provider: str) -> None:
        changed: dict[int, dict[str, Any]] = {}
        for position, job_id in enumerate(self._fair_order(provider), start=1):
            if self._positions.get(job_id) != position:
                self._positions[job_id] = position
                changed[job_id] = {"queue_position": position}
        if changed:
            self._background.spawn(self._save_positions(changed), f"queue positions of {provider}")

    async def _save_positions(self, changed: dict[int, dict[str, Any]]) -> None:
        await self.store.update_jobs(changed)
        for job in await self.store.get_jobs(list(changed)):
            if job.state is JobState.QUEUED:
                self._publish(job)

    async def _submit(self, job_id: int) -> None:
        provider_name = ""
        try:
            job = await self._get(job_id)
            provider_name = job.provider
            if job.state is not JobState.QUEUED:
                return
            if job.cancel_requested:
                await self._finish(job, JobState.CANCELLED, ErrorKind.CANCELLED, "Cancelled before it was sent.")
                return
            provider = self.providers.get(job.provider)
            if provider is None:
                await self._finish(
                    job,
                    JobState.FAILED,
                    ErrorKind.CREDENTIALS,
                    f"{job.provider} is not configured on this bot any more, so the job was not sent.",
                )
                return
            try:
                request = self._request(job)
            except InputMissing:
                await self._finish(
                    job,
                    JobState.FAILED,
                    ErrorKind.INVALID_REQUEST,
                    "The input file is no longer kept; start a new job.",
                )
                return
            try:
                job = await self._move(
                    job.id,
                    JobState.SUBMITTING,
                    expect={JobState.QUEUED},
                    submitted_at=datetime.now(UTC),
                    submit_attempts=job.submit_attempts + 1,
                    queue_position=None,
                    detail=f"sending to {provider.display_name} (attempt {job.submit_attempts + 1})",
                )
            except InvalidTransition:
                return  # cancelled meanwhile
            self._publish(job)
            try:
                submission = await provider.submit(request, idempotency_key=job.key)
            except SubmitOutcomeUnknown as exc:
                log.warning("job %s: %s; reconciling", job.id, exc)
                await self._reconcile(job, provider, request)
                return
            except ProviderError as exc:
                await self._submit_refused(job, provider, exc)
                return
            await self._accept(job, submission)
        finally:
            if provider_name:
                self._submitting.get(provider_name, set()).discard(job_id)
                self._order.pop(provider_name, None)
            if job_id not in self._queued.get(provider_name, {}):
                self._job_user.pop(job_id, None)
                self._arrival.pop(job_id, None)

    def _request(self, job: Job) -> GenerationRequest:
        return GenerationRequest(Operation(job.operation), job.params, self.inputs.load(job.media))

    async def _submit_refused(self, job: Job, provider: VideoProvider, exc: ProviderError) -> None:
        if (
            isinstance(exc, RateLimited | ProviderUnavailable)
            and job.submit_attempts < self.settings.max_submit_attempts
        ):
            # A passing refusal: the job goes back to the head of the queue, not into failure.
            wait = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after else None
            if wait is None:
                wait = min(300.0, self.settings.poll_interval * 2 ** (job.submit_attempts - 1))
            if isinstance(exc, RateLimited):
                self._cooldown[job.provider] = self._clock() + wait
            await self._requeue(job, wait, f"{provider.display_name} is busy ({exc.message}); trying again")
            return
        if isinstance(exc, ModerationRejected):
            await self._finish(
                job, JobState.REJECTED, exc.kind, f"{provider.display_name}'s content review refused this input."
            )
            return
        await self._finish(job, JobState.FAILED, exc.kind, _refusal_sentence(provider, exc))

    async def _requeue(self, job: Job, wait: float, detail: str) -> None:
        not_before = datetime.now(UTC) + timedelta(seconds=wait)
        job = await self._move(
            job.id, JobState.QUEUED, expect={JobState.SUBMITTING}, not_before=not_before, detail=detail
        )
        # Back at the place it first had: a refusal that passes costs no one their turn.
        served = self._served.get(job.provider)
        if served and served[job.user_id] > 0:
            served[job.user_id] -= 1
        self._enqueue(job, arrival=-1 - job.submit_attempts)
        self._not_before[job.id] = self._clock() + wait
        self._update_positions(job.provider)
        self._publish(job)

    async def _accept(self, job: Job, submission: Submission) -> None:
        accepted = datetime.now(UTC)
        job = await self._move(
            job.id,
            JobState.RUNNING,
            expect={JobState.SUBMITTING},
            task_id=submission.task_id,
            accepted_at=accepted,
            credits=submission.credits,
            detail=f"accepted as task {submission.task_id}",
        )
        self._track(job, next_poll=self._clock() + self.settings.poll_interval)
        self._publish(job)
        if job.cancel_requested:
            await self._cancel_running(job)

    async def _recover(self, job_id: int) -> None:
        """A job left in ``submitting`` by a crash: find out what its send did."""
        job = await self._get(job_id)
        try:
            provider = self.providers.get(job.provider)
            if provider is None:
                await self._finish(
                    job,
                    JobState.FAILED,
                    ErrorKind.CREDENTIALS,
                    f"{job.provider} is not configured any more, so the job's outcome cannot be checked.",
                )
                return
            try:
                request = self._request(job)
            except InputMissing:
                request = None
            await self._reconcile(job, provider, request)
        finally:
            self._submitting.get(job.provider, set()).discard(job_id)

    async def _reconcile(self, job: Job, provider: VideoProvider, request: GenerationRequest | None) -> None:
        """Settle a send whose outcome is unknown by the provider's own rule (see its recover_submission)."""
        since = job.submitted_at or job.created_at
        for attempt in range(1, 6):
            try:
                if request is None:
                    raise SubmitOutcomeUnknown(provider.display_name, "the input file is no longer kept")
                found = await provider.recover_submission(request, idempotency_key=job.key, since=since)
            except SubmitOutcomeUnknown:
                await self._finish(
                    job,
                    JobState.FAILED,
                    ErrorKind.UNAVAILABLE,
                    f"The bot lost track of this job while sending it, and {provider.display_name} cannot tell "
                    "whether it started; to avoid charging twice it was not sent again.",
                )
                return
            except ProviderError as exc:
                if not exc.retryable:
                    await self._finish(job, JobState.FAILED, exc.kind, _refusal_sentence(provider, exc))
                    return
                log.warning("job %s: checking its send failed (%s); attempt %d", job.id, exc, attempt)
                await asyncio.sleep(min(60.0, self.settings.poll_interval * attempt))
                continue
            if found is None:
                await self._requeue(job, 0.0, f"{provider.display_name} has no task for this job; sending it again")
            else:
                await self._accept(job, found)
            return
        await self._finish(
            job,
            JobState.FAILED,
            ErrorKind.UNAVAILABLE,
            f"{provider.display_name} could not be reached to check whether this job started; it was not sent again.",
        )

    # Polling.

    def _track(self, job: Job, *, next_poll: float) -> None:
        assert job.task_id is not None
        tracked = _Running(
            job_id=job.id,
            provider=job.provider,
            user_id=job.user_id,
            task=TaskRef(job.task_id, Operation(job.operation)),
            accepted_at=job.accepted_at or job.updated_at,
            next_poll=next_poll,
            off_peak=bool(job.params.get("off_peak")),
            progress=job.progress,
            provider_status=job.provider_status,
            changed_at=job.progress_at or job.accepted_at or job.updated_at,
            started=job.started_at is not None,
        )
        if job.id not in self._running:
            self._running_count[job.provider] += 1
        self._running[job.id] = tracked
        self._schedule(tracked, next_poll)

    def _untrack(self, job_id: int) -> _Running | None:
        tracked = self._running.pop(job_id, None)
        if tracked is not None:
            self._running_count[tracked.provider] -= 1
            self._order.pop(tracked.provider, None)
        return tracked

    def _schedule(self, tracked: _Running, at: float) -> None:
        tracked.next_poll = at
        heap = self._poll_heaps.setdefault(tracked.provider, [])
        heapq.heappush(heap, (at, next(self._poll_sequence), tracked.job_id))

    def _dispatch_polls(self) -> None:
        if self._stopping:
            return
        now = self._clock()
        for provider_name, heap in self._poll_heaps.items():
            if not heap or heap[0][0] > now:
                continue
            provider = self.providers.get(provider_name)
            # A batching provider answers many tasks per request: tasks due soon ride along, so that
            # requests go out full instead of one per task as their due times spread out.
            horizon = now + (self.settings.poll_interval / 2 if provider and provider.poll_batch_size > 1 else 0)
            due: list[_Running] = []
            while heap and heap[0][0] <= horizon:
                at, _, job_id = heapq.heappop(heap)
                tracked = self._running.get(job_id)
                if tracked is None or tracked.next_poll != at:
                    continue
                # In flight: not due again until its answer schedules the next poll.
                tracked.next_poll = math.inf
                due.append(tracked)
            if not due:
                continue
            if provider is None:
                for tracked in due:
                    self._schedule(tracked, now + self.settings.max_poll_interval)
                continue
            self.stats.poll_rounds[provider_name] += 1
            self._background.spawn(self._poll_round(provider, due), f"poll {provider_name}")

    async def _poll_round(self, provider: VideoProvider, due: list[_Running]) -> None:
        if self.first_poll_at is None:
            self.first_poll_at = self._clock()
        size = max(1, provider.poll_batch_size)
        slots = self._poll_slots.get(provider.name)
        if slots is None:
            # One request answers many tasks for a batching provider; otherwise a few are in flight.
            slots = asyncio.Semaphore(2 if size > 1 else self.settings.max_polls_in_flight)
            self._poll_slots[provider.name] = slots
        results: list[tuple[_Running, TaskStatus | ProviderError]] = []

        async def query(group: list[_Running]) -> None:
            async with slots:
                self.stats.poll_requests[provider.name] += 1
                self.stats.tasks_polled[provider.name] += len(group)
                try:
                    statuses = await provider.poll([tracked.task for tracked in group])
                except ProviderError as exc:
                    results.extend((tracked, exc) for tracked in group)
                    return
                results.extend(zip(group, statuses, strict=True))

        try:
            await asyncio.gather(*(query(due[start : start + size]) for start in range(0, len(due), size)))
        finally:
            await self._apply(provider, results)
            now = self._clock()
            for tracked in due:
                # Anything the answers did not reschedule (an unexpected error) is polled again later.
                if tracked.next_poll == math.inf and tracked.job_id in self._running:
                    self._schedule(tracked, now + self.settings.poll_interval)

    async def _apply(
        self, provider: VideoProvider, results: Sequence[tuple[_Running, TaskStatus | ProviderError]]
    ) -> None:
        now = self._clock()
        wall = datetime.now(UTC)
        updates: dict[int, dict[str, Any]] = {}
        changed: list[int] = []
        for tracked, outcome in results:
            if tracked.job_id not in self._running:
                continue
            if isinstance(outcome, ProviderError):
                tracked.failures += 1
                self._schedule(tracked, now + min(300.0, self._interval(tracked, wall) * 2.0**tracked.failures))
                log.warning("job %s: polling failed (%s)", tracked.job_id, outcome)
                continue
            tracked.failures = 0
            tracked.polls += 1
            if outcome.state.finished:
                await self._finished_at_provider(tracked, provider, outcome)
                continue
            fields: dict[str, Any] = {}
            if outcome.progress is not None and outcome.progress != tracked.progress:
                tracked.progress = outcome.progress
                tracked.changed_at = wall
                fields.update(progress=outcome.progress, progress_at=wall)
            if outcome.provider_status != tracked.provider_status:
                tracked.provider_status = outcome.provider_status
                fields["provider_status"] = outcome.provider_status
            if outcome.state is TaskState.RUNNING and not tracked.started:
                tracked.started = True
                fields["started_at"] = wall
            if fields:
                updates[tracked.job_id] = fields
                changed.append(tracked.job_id)
            self._schedule(tracked, now + self._interval(tracked, wall))
        if updates:
            await self.store.update_jobs(updates)
            for job in await self.store.get_jobs(changed):
                self._publish(job)

    def _interval(self, tracked: _Running, now: datetime) -> float:
        if tracked.off_peak:
            return self.settings.off_peak_poll_interval
        age = (now - tracked.accepted_at).total_seconds()
        base = self.settings.poll_interval
        # Long runs are checked less often: most of them take minutes, some take an hour.
        factor = 1 if age < 300 else 2 if age < 900 else 4
        return min(self.settings.max_poll_interval, base * factor)

    async def _finished_at_provider(self, tracked: _Running, provider: VideoProvider, status: TaskStatus) -> None:
        self._untrack(tracked.job_id)
        state = {
            TaskState.SUCCEEDED: JobState.SUCCEEDED,
            TaskState.REJECTED: JobState.REJECTED,
        }.get(status.state, JobState.FAILED)
        if status.error_kind is ErrorKind.CANCELLED:
            state = JobState.CANCELLED
        fields: dict[str, Any] = {
            "video_url": status.video_url,
            "cover_url": status.cover_url,
            "provider_status": status.provider_status,
        }
        if status.credits is not None:
            fields["credits"] = status.credits
        if state is JobState.SUCCEEDED:
            fields["progress"] = 1.0
        try:
            job = await self._move(
                tracked.job_id,
                state,
                expect={JobState.RUNNING},
                error_kind=status.error_kind.value if status.error_kind else None,
                error_reason=status.error_reason,
                detail=f"{provider.display_name} reported {status.provider_status or status.state.value}",
                **fields,
            )
        except InvalidTransition:
            return
        self._publish(job)

    # Deadlines and cancel.

    async def _enforce_deadlines(self) -> None:
        now = self._clock()
        if now < self._next_deadline_check:
            return
        self._next_deadline_check = now + 1.0
        wall = datetime.now(UTC)
        for tracked in list(self._running.values()):
            limits = self.settings.limits_for(tracked.provider)
            provider = self.providers.get(tracked.provider)
            name = provider.display_name if provider else tracked.provider
            deadline = limits.off_peak_deadline if tracked.off_peak else limits.deadline
            if wall - tracked.accepted_at > deadline:
                await self._time_out(
                    tracked, f"{name} did not finish within {_duration(deadline)}, so the bot stopped waiting."
                )
            elif (
                limits.stall is not None
                and tracked.progress is not None
                and not tracked.off_peak
                and wall - tracked.changed_at > limits.stall
            ):
                await self._time_out(
                    tracked,
                    f"{name} made no progress for {_duration(limits.stall)} "
                    f"(stuck at {tracked.progress:.0%}), so the bot stopped waiting.",
                )
        await self._expire_queue(wall)

    async def _expire_queue(self, wall: datetime) -> None:
        timeout = self.settings.queue_timeout
        for queue in self._queued.values():
            if not queue:
                continue
            oldest = await self.store.get_job(min(queue, key=self._arrival.__getitem__))
            if oldest is None or wall - oldest.created_at <= timeout:
                continue
            self._dequeue(oldest)
            with contextlib.suppress(InvalidTransition):
                await self._finish(
                    oldest,
                    JobState.TIMED_OUT,
                    None,
                    f"The job waited in the queue for more than {_duration(timeout)}, so it was not sent.",
                )

    async def _time_out(self, tracked: _Running, reason: str) -> None:
        self._untrack(tracked.job_id)
        provider = self.providers.get(tracked.provider)
        if provider is not None and provider.can_cancel:
            try:
                await provider.cancel(tracked.task)
            except ProviderError as exc:
                log.info("job %s: cancel after its deadline did not go through (%s)", tracked.job_id, exc)
        job = await self._get(tracked.job_id)
        with contextlib.suppress(InvalidTransition):
            await self._finish(job, JobState.TIMED_OUT, None, reason)

    async def _cancel_running(self, job: Job) -> Job:
        tracked = self._untrack(job.id)
        provider = self.providers.get(job.provider)
        name = provider.display_name if provider else job.provider
        task = tracked.task if tracked else TaskRef(job.task_id or "", Operation(job.operation))
        if provider is not None and provider.can_cancel:
            try:
                await provider.cancel(task)
                reason = f"Cancelled; {name} stopped the job."
            except CancelNotPossible:
                reason = (
                    f"Cancelled; {name} had already started it, so it may still be charged. "
                    "The bot stopped tracking it."
                )
            except ProviderError as exc:
                if tracked is not None:
                    self._running[job.id] = tracked
                    self._running_count[tracked.provider] += 1
                    self._schedule(tracked, self._clock())
                raise JobNotCancellable(
                    f"{name} could not be reached to cancel job {job.id} ({exc.message}); try again in a minute."
                ) from exc
        else:
            reason = (
                f"Cancelled; {name} cannot stop a job once started, so it may still be charged. "
                "The bot stopped tracking it."
            )
        try:
            return await self._finish(job, JobState.CANCELLED, ErrorKind.CANCELLED, reason)
        except InvalidTransition:
            return await self._get(job.id)

    # Helpers.

    async def _finish(self, job: Job, state: JobState, kind: ErrorKind | None, reason: str) -> Job:
        job = await self._move(
            job.id,
            state,
            error_kind=kind.value if kind else None,
            error_reason=reason,
            detail=reason,
        )
        self._publish(job)
        return job

    async def _move(
        self, job_id: int, state: JobState, *, detail: str = "", expect: set[JobState] | None = None, **fields: Any
    ) -> Job:
        """Every state change goes through here: the ledger records it, the log gets one line."""
        job = await self.store.transition(job_id, state, detail=detail, expect=expect, **fields)
        log.info("job %d: %s (%s)", job_id, state.value, detail)
        return job

    async def _get(self, job_id: int) -> Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        return job

    def _publish(self, job: Job) -> None:
        self._outbox.put_nowait(job)

    async def _publish_forever(self) -> None:
        while True:
            job = await self._outbox.get()
            for subscriber in self._subscribers:
                try:
                    await subscriber(job)
                except Exception:
                    error_id = secrets.token_hex(4)
                    log.exception("job %s: a subscriber failed (error %s)", job.id, error_id)


def _refusal_sentence(provider: VideoProvider, exc: ProviderError) -> str:
    name = provider.display_name
    if exc.kind is ErrorKind.CREDENTIALS:
        return f"{name} refused the bot's API key; ask the bot's owner to check it."
    if exc.kind is ErrorKind.INSUFFICIENT_CREDITS:
        return f"The bot's {name} account is out of credits; ask the bot's owner to top it up."
    if exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE):
        return f"{name} stayed unavailable after several tries ({exc.message.rstrip('.')}); try again later."
    return f"{name} refused the job: {exc.message.rstrip('.')}."


def _duration(span: timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} minutes"
    return f"{round(minutes / 60)} hours"

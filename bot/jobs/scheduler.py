"""One scheduler for every job, driven by the ledger: it asks the ledger for due work, does it, and
writes each outcome as a conditional change. Nothing about a job lives only in memory.

Due work is of three kinds: queued jobs a provider has room for (claimed in fair order), jobs being
sent whose outcome must be checked (a lost answer, or a lease that ran out in a crash), and running
jobs due for a poll (batched where the provider allows). Each claim is a lease in the job row; whoever
loses a race reads the row again and acts on what it says. The scheduler knows jobs and providers and
nothing of Discord: it publishes each visible change of a job to its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.background import TaskSet
from bot.jobs import reasons
from bot.jobs.inputs import InputMissing, InputStore
from bot.jobs.observer import JobObserver
from bot.jobs.returns import LeaseReturns
from bot.store import Admission, InvalidTransition, Job, JobState, NewJob, Store, TaskReport
from providers import (
    CallbackNews,
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
from providers.callbacks import CALLBACK_SKEW
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

#: The longest the loop sleeps without being woken: the pace at which it notices work that another
#: process (or a clock jump) made due.
MAX_SLEEP = 30.0
#: Poll requests claimed per provider request slot: work handed out ahead of the slots freeing up.
POLL_BACKLOG = 8


@dataclass(frozen=True)
class ProviderLimits:
    """How hard the scheduler may push one provider, and how long it waits for it."""

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


@dataclass(frozen=True)
class SchedulerSettings:
    """Timing and limits of the scheduler; scheduler_settings() builds the production values from Settings."""

    poll_interval: float = 5.0
    max_poll_interval: float = 60.0
    off_peak_poll_interval: float = 300.0
    #: Status queries in flight at once per provider (for providers polled one task at a time).
    max_polls_in_flight: int = 8
    #: Sends of one job refused for a passing reason (outage, rate limit), this one included, before it fails.
    max_submit_attempts: int = 8
    #: A job still queued after this long ends as timed out.
    queue_timeout: timedelta = timedelta(hours=6)
    limits: Mapping[str, ProviderLimits] = field(default_factory=dict)
    #: How long a claim on a job's send or poll holds before anyone may take the work over.
    lease: timedelta = timedelta(minutes=5)
    #: How long a stop waits for sends and polls in flight; above the provider HTTP timeout.
    stop_grace: float = 45.0
    #: After a send whose outcome is unknown, how long the provider is asked before the job is sent
    #: again (a create can land minutes late), and how often.
    reconcile_window: timedelta = timedelta(minutes=3)
    reconcile_interval: float = 20.0
    #: After the deadline, how long polls that fail are retried before the job ends as timed out.
    unreachable_grace: timedelta = timedelta(hours=1)
    #: How often queue timeouts and retention run.
    maintenance_interval: float = 10.0
    #: Providers that call back: their jobs are checked when a callback says so, and otherwise only this
    #: often, in case a callback is lost.
    callback_providers: frozenset[str] = frozenset()
    callback_poll_interval: float = 300.0
    #: For a batching provider that calls back: the least time between two rounds of checks, so that
    #: callbacks arriving together share a request.
    callback_round_gap: float = 0.25

    def limits_for(self, provider: str) -> ProviderLimits:
        return self.limits.get(provider, ProviderLimits())


@dataclass
class SchedulerStats:
    """Counters for operators and the benchmark."""

    poll_rounds: Counter[str] = field(default_factory=Counter)
    poll_requests: Counter[str] = field(default_factory=Counter)
    tasks_polled: Counter[str] = field(default_factory=Counter)


class JobNotCancellable(Exception):
    """The job already finished, or its provider could not be reached; the message says which."""


def attempt_key(job_key: str, attempt: int) -> str:
    """The idempotency key of one definite send: a refused send is retried under a new key, while a send
    whose outcome is unknown is looked up (or replayed) under the same one."""
    return job_key if attempt <= 1 else f"{job_key}-{attempt}"


def job_key_of(idempotency_key: str) -> str:
    """The job key an attempt key was made from (the key itself for a first attempt)."""
    stem, dash, attempt = idempotency_key.rpartition("-")
    return stem if dash and attempt.isdigit() and int(attempt) > 1 else idempotency_key


class Scheduler:
    """Drives every unfinished job to one finished state."""

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, VideoProvider],
        inputs: InputStore,
        settings: SchedulerSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        maintenance: Callable[[], Awaitable[None]] | None = None,
        observer: JobObserver | None = None,
    ) -> None:
        self.store = store
        self.providers = providers
        self.inputs = inputs
        self.settings = settings or SchedulerSettings()
        self._clock = clock
        self._maintenance = maintenance
        self._observer = observer
        #: This process's name on the leases it takes.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._subscribers: list[Subscriber] = []
        self._wake = asyncio.Event()
        self._work = TaskSet(on_done=self._wake.set)
        self._returns = LeaseReturns(store, self.owner, self._work.spawn)
        self._outbox: asyncio.Queue[Job] = asyncio.Queue()
        self._loop_task: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._stopping = False
        # Caches that can be thrown away: they only save the loop some reads.
        self._polls_in_flight: Counter[str] = Counter()
        self._poll_slots: dict[str, asyncio.Semaphore] = {}
        self._blocked_until: dict[str, datetime | None] = {}
        #: For a provider that batches polls: no new round of polls before this moment.
        self._next_round: dict[str, datetime] = {}
        self._queues_changed: set[str] = set(providers)
        self._next_maintenance = 0.0
        self.first_poll_at: float | None = None
        self.stats = SchedulerStats()

    # Lifecycle.

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with the job after every visible change, in order, one at a time."""
        self._subscribers.append(subscriber)

    async def start(self) -> None:
        """Take up every unfinished job from the ledger and start scheduling."""
        if not self.store.shared:
            # The SQLite ledger belongs to one process: whatever a previous run held is free again.
            # On a shared ledger the leases of a process that died run out by themselves.
            await self.store.expire_leases()
            # The first checks after a restart go out at once and spread over one interval, so that
            # thousands of them do not fall due together. On a shared ledger the poll schedule is that of
            # live processes, which have just polled those jobs: a newcomer keeps to it.
            await self.store.spread_checks(timedelta(seconds=self.settings.poll_interval))
        await self.store.listen(self._ledger_changed)
        # On a shared ledger another process may have the provider this one lacks: its jobs are left to it.
        orphans = [] if self.store.shared else await self.store.jobs_of_other_providers(list(self.providers))
        for job in orphans:
            with contextlib.suppress(InvalidTransition):
                await self._finish(
                    job,
                    JobState.FAILED,
                    ErrorKind.CREDENTIALS,
                    reasons.provider_gone(job.provider),
                )
        for job in await self.store.undelivered_jobs():
            self._publish(job)
        self._publisher = asyncio.create_task(self._publish_forever(), name="scheduler publisher")
        self._loop_task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking new work; sends and polls in flight get the grace to finish, the rest resume at next start."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        await self._work.drain(self.settings.stop_grace if grace is None else grace)
        if self._publisher is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._outbox.join()
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)

    @property
    def running(self) -> bool:
        """Whether the scheduler loop is alive."""
        return self._loop_task is not None and not self._loop_task.done()

    # What the Discord side calls.

    async def enqueue(self, new: NewJob, *, admission: Admission | None = None) -> Job:
        """Record a new job, queued; with ``admission``, only if the limits still allow it (LimitReached)."""
        job = await self.store.create_job(new, admission=admission)
        if self._observer is not None:
            self._observer.job_created(job)
        self._queue_changed(job.provider)
        return job

    async def task_reported(self, provider: str, news: CallbackNews) -> TaskReport:
        """A provider's callback (already checked by its client) names tasks: their jobs are checked now.

        The callback itself decides nothing: the check that follows asks the provider's API.
        """
        keys = {key for given in news.keys for key in (given, job_key_of(given))}
        report = await self.store.report_task(
            provider,
            task_ids=news.task_ids,
            keys=sorted(keys),
            finished=news.finished,
            nonce=news.nonce,
            nonce_since=self.store.now() - CALLBACK_SKEW if news.nonce else None,
        )
        if report.woken:
            self._wake.set()
        for job in await self.store.get_jobs(list(report.started)):
            self._publish(job)
        return report

    async def mark_delivered(self, job_id: int) -> bool:
        """Record that a finished job was announced; False when it already was."""
        return await self.store.mark_delivered(job_id)

    async def cancel(self, job_id: int) -> Job:
        """Cancel a job wherever it is. Raises JobNotCancellable when it already finished."""
        while True:
            job = await self._get(job_id)
            if job.state.finished:
                raise JobNotCancellable(
                    reasons.ALREADY_ENDED.format(job_id=job_id, state=job.state.value.replace("_", " "))
                )
            if job.state is JobState.QUEUED:
                try:
                    cancelled = await self._finish(
                        job,
                        JobState.CANCELLED,
                        ErrorKind.CANCELLED,
                        reasons.CANCELLED_BEFORE_SENT,
                        expect=JobState.QUEUED,
                    )
                except InvalidTransition:
                    continue
                self._queue_changed(job.provider)
                return cancelled
            if job.state is JobState.SUBMITTING:
                # The send is in flight: its answer is cancelled at the provider as soon as it comes.
                if await self.store.request_cancel(job_id):
                    return await self._get(job_id)
                continue
            return await self._cancel_running(job)

    # The loop.

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            dispatched = 0
            try:
                dispatched = await self._pass()
                delay = await self._seconds_to_next_due()
            except Exception:
                log.exception("The scheduler's scheduling pass failed; it carries on")
                delay = 1.0
            if delay <= 0 and not dispatched:
                # Due work that could not be started (no free poll slot, no room): what frees it wakes us.
                delay = 1.0
            if delay > 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _pass(self) -> int:
        dispatched = 0
        for name, provider in self.providers.items():
            if self._stopping:
                break
            dispatched += await self._dispatch_submits(name)
            dispatched += await self._dispatch_checks(provider)
            dispatched += await self._dispatch_polls(provider)
        if self._clock() >= self._next_maintenance and not self._stopping:
            every = min(self.settings.maintenance_interval, self.settings.queue_timeout.total_seconds() / 4)
            self._next_maintenance = self._clock() + every
            await self._expire_queue()
            if self._maintenance is not None:
                await self._maintenance()
        for name in list(self._queues_changed):
            self._queues_changed.discard(name)
            await self._update_positions(name)
        return dispatched

    async def _seconds_to_next_due(self) -> float:
        due = await self.store.due_times(list(self.providers))
        now = self.store.now()
        moments = [now + timedelta(seconds=MAX_SLEEP)]
        if due.sends is not None:
            moments.append(due.sends)
        for name, moment in due.polls.items():
            gate = self._next_round.get(name)
            moments.append(max(moment, gate) if gate is not None else moment)
        for name, moment in due.queued.items():
            if moment > now:
                moments.append(moment)
            elif (blocked := self._blocked_until.get(name)) is not None:
                moments.append(blocked)
            # Otherwise it waits for room at its provider, and a job leaving the provider wakes the loop.
        wait = (min(moments) - now).total_seconds()
        return max(0.0, min(wait, self._next_maintenance - self._clock()))

    def _ledger_changed(self) -> None:
        """Another process queued or changed a job: look at the ledger now rather than at the next due moment."""
        self._wake.set()

    def _queue_changed(self, provider: str) -> None:
        self._queues_changed.add(provider)
        self._wake.set()

    # Sending.

    async def _dispatch_submits(self, name: str) -> int:
        limits = self.settings.limits_for(name)
        claim = await self.store.claim_submits(
            name,
            owner=self.owner,
            lease=self.settings.lease,
            max_running=limits.max_running,
            per_minute={operation.value: cap for operation, cap in limits.submits_per_minute.items()},
            limit=64,
        )
        self._blocked_until[name] = claim.blocked_until
        for job in claim.jobs:
            self._publish(job)
            self._work.spawn(self._holding([job], self._send(job)), f"send job {job.id}")
        if claim.jobs:
            self._queues_changed.add(name)
        return len(claim.jobs)

    async def _send(self, job: Job) -> None:
        provider = self.providers[job.provider]
        job = await self._get(job.id)
        if job.cancel_requested:
            await self._end(job, JobState.CANCELLED, ErrorKind.CANCELLED, reasons.CANCELLED_BEFORE_SENT)
            return
        try:
            request = self._request(job)
        except InputMissing:
            await self._end(job, JobState.FAILED, ErrorKind.INVALID_REQUEST, reasons.INPUT_GONE)
            return
        try:
            submission = await provider.submit(request, idempotency_key=attempt_key(job.key, job.submit_attempts))
        except SubmitOutcomeUnknown as exc:
            self._refused(job.provider, "create", exc)
            log.warning("job %s: %s; checking with %s", job.id, exc, provider.display_name)
            await self._check_again(job, provider, soon=True)
            return
        except ProviderError as exc:
            self._refused(job.provider, "create", exc)
            await self._submit_refused(job, provider, exc)
            return
        await self._accept(job, provider, submission)

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
            not_before = self.store.now() + timedelta(seconds=wait)
            if isinstance(exc, RateLimited):
                await self.store.pause_provider(job.provider, not_before)
            await self._requeue(job, not_before, f"{provider.display_name} is busy ({exc.message}); trying again")
            return
        if isinstance(exc, ModerationRejected):
            await self._end(job, JobState.REJECTED, exc.kind, reasons.MODERATION.format(provider=provider.display_name))
            return
        await self._end(job, JobState.FAILED, exc.kind, _refusal_sentence(provider, exc))

    async def _requeue(self, job: Job, not_before: datetime, detail: str) -> None:
        try:
            job = await self._move(
                job.id,
                JobState.QUEUED,
                expect={JobState.SUBMITTING},
                owner=self.owner,
                not_before=not_before,
                next_check_at=not_before,
                # Back at the place it first had: a refusal that passes costs no one their turn.
                queue_priority=-job.submit_attempts,
                provider_status=None,
                detail=detail,
            )
        except InvalidTransition:
            return
        self._publish(job)
        self._queue_changed(job.provider)

    async def _accept(self, job: Job, provider: VideoProvider, submission: Submission) -> None:
        now = self.store.now()
        try:
            job = await self._move(
                job.id,
                JobState.RUNNING,
                expect={JobState.SUBMITTING},
                owner=self.owner,
                task_id=submission.task_id,
                accepted_at=now,
                credits=submission.credits,
                provider_status=None,
                next_check_at=now + timedelta(seconds=self._first_check(job)),
                detail=f"accepted as task {submission.task_id}",
            )
        except InvalidTransition:
            await self._accepted_too_late(job, provider, submission)
            return
        self._publish(job)
        if job.cancel_requested:
            with contextlib.suppress(JobNotCancellable):
                await self._cancel_running(job)

    async def _accepted_too_late(self, job: Job, provider: VideoProvider, submission: Submission) -> None:
        """The job moved on while its send was out (its lease ran out): the task must not run unwatched."""
        current = await self._get(job.id)
        if current.task_id == submission.task_id:
            return
        log.warning(
            "job %s: %s accepted task %s after the job had become %s; cancelling the task",
            job.id,
            provider.display_name,
            submission.task_id,
            current.state.value,
        )
        if provider.can_cancel:
            try:
                await provider.cancel(TaskRef(submission.task_id, Operation(job.operation)))
            except ProviderError as exc:
                log.warning(
                    "job %s: task %s could not be cancelled (%s); it may be charged", job.id, submission.task_id, exc
                )

    async def _dispatch_checks(self, provider: VideoProvider) -> int:
        jobs = await self.store.claim_due(
            provider.name,
            JobState.SUBMITTING,
            owner=self.owner,
            lease=self.settings.lease,
            limit=16,
            horizon=timedelta(0),
        )
        for job in jobs:
            self._work.spawn(self._holding([job], self._check_send(job, provider)), f"check the send of job {job.id}")
        return len(jobs)

    async def _check_send(self, job: Job, provider: VideoProvider) -> None:
        """A send whose outcome is unknown (a lost answer, or a crash): find the task it made, by the
        provider's own rule, over a window of minutes, before sending again."""
        since = job.submitted_at or job.created_at
        try:
            request = self._request(job)
            found = await provider.recover_submission(
                request, idempotency_key=attempt_key(job.key, job.submit_attempts), since=since
            )
        except (SubmitOutcomeUnknown, InputMissing):
            await self._end(
                job,
                JobState.FAILED,
                ErrorKind.UNAVAILABLE,
                reasons.LOST_TRACK.format(provider=provider.display_name),
            )
            return
        except ProviderError as exc:
            if not exc.retryable:
                await self._end(job, JobState.FAILED, exc.kind, _refusal_sentence(provider, exc))
                return
            log.warning("job %s: checking its send failed (%s)", job.id, exc)
            await self._check_again(job, provider, soon=False)
            return
        if found is not None:
            await self._accept(job, provider, found)
        elif self.store.now() - since < self.settings.reconcile_window:
            await self._check_again(job, provider, soon=False)
        else:
            await self._requeue(
                job, self.store.now(), f"{provider.display_name} has no task for this job; sending it again"
            )

    async def _check_again(self, job: Job, provider: VideoProvider, *, soon: bool) -> None:
        delay = self.settings.poll_interval if soon else self.settings.reconcile_interval
        status = reasons.checking_receipt(provider.display_name)
        held = await self.store.release(
            {
                job.id: {
                    "next_check_at": self.store.now() + timedelta(seconds=delay),
                    "provider_status": status,
                }
            },
            owner=self.owner,
        )
        if held and job.provider_status != status:
            self._publish(await self._get(job.id))

    # Polling.

    async def _dispatch_polls(self, provider: VideoProvider) -> int:
        size = max(1, provider.poll_batch_size)
        # Claimed polls queue behind the provider's request slots, so a pass hands out enough work for
        # several rounds of requests instead of one request per freed slot.
        slots = self._request_capacity(provider) * POLL_BACKLOG - self._polls_in_flight[provider.name]
        if slots <= 0:
            return 0
        now = self.store.now()
        gate = self._next_round.get(provider.name)
        if gate is not None and now < gate:
            return 0
        # Tasks due soon ride along in a batch, so requests go out full instead of one per task; and rounds
        # are that far apart, or each task falling due would start a round of its own, mostly part-empty.
        horizon = timedelta(seconds=self.settings.poll_interval / 2 if size > 1 else 0)
        jobs = await self.store.claim_due(
            provider.name,
            JobState.RUNNING,
            owner=self.owner,
            lease=self.settings.lease,
            limit=slots * size,
            horizon=horizon,
        )
        if jobs and size > 1 and len(jobs) < slots * size:
            # Everything due within the horizon went; what the slots left behind goes as soon as they free.
            # Where callbacks make tasks due one by one, rounds follow them closely.
            gap = horizon
            if provider.name in self.settings.callback_providers:
                gap = min(gap, timedelta(seconds=self.settings.callback_round_gap))
            self._next_round[provider.name] = now + gap
        groups = [jobs[start : start + size] for start in range(0, len(jobs), size)]
        for group in groups:
            self._polls_in_flight[provider.name] += 1
            self.stats.poll_rounds[provider.name] += 1
            self._work.spawn(self._holding(group, self._poll(provider, group)), f"poll {provider.name}")
        return len(groups)

    async def _holding(self, jobs: Sequence[Job], work: Awaitable[None]) -> None:
        """Run work done under the jobs' leases; if it fails, give back the leases it still holds.

        The lease keeper renews every lease this process holds, so a lease kept by work that died would
        never run out: its jobs would wait for as long as the process lives.
        """
        try:
            await work
        except Exception:
            try:
                await self.store.release({job.id: {} for job in jobs}, owner=self.owner)
            except Exception:
                log.exception("Giving back the leases of jobs %s failed", [job.id for job in jobs])
            raise

    async def _poll(self, provider: VideoProvider, group: list[Job]) -> None:
        if self.first_poll_at is None:
            self.first_poll_at = self._clock()
        results: list[tuple[Job, TaskStatus | ProviderError]]
        try:
            async with self._request_slots(provider):
                self.stats.poll_requests[provider.name] += 1
                self.stats.tasks_polled[provider.name] += len(group)
                tasks = [TaskRef(job.task_id or "", Operation(job.operation)) for job in group]
                statuses = await provider.poll(tasks)
            results = list(zip(group, statuses, strict=True))
        except ProviderError as exc:
            self._refused(provider.name, "poll", exc)
            results = [(job, exc) for job in group]
        finally:
            self._polls_in_flight[provider.name] -= 1
        await self._apply(provider, results)

    async def _apply(self, provider: VideoProvider, results: Sequence[tuple[Job, TaskStatus | ProviderError]]) -> None:
        now = self.store.now()
        releases: dict[int, dict[str, Any]] = {}
        visible: list[int] = []
        for job, outcome in results:
            deadline = self._deadline(job)
            if isinstance(outcome, ProviderError):
                failures = job.poll_failures + 1
                if now > deadline + self.settings.unreachable_grace:
                    await self._time_out(
                        job,
                        provider,
                        reasons.UNREACHABLE_PAST_DEADLINE.format(provider=provider.display_name),
                    )
                    continue
                log.warning("job %s: polling failed (%s)", job.id, outcome)
                wait = min(300.0, self._interval(job, now) * 2.0**failures)
                releases[job.id] = {"poll_failures": failures, "next_check_at": now + timedelta(seconds=wait)}
                continue
            if outcome.state.finished:
                await self._finished_at_provider(job, provider, outcome)
                continue
            fields: dict[str, Any] = {"poll_failures": 0}
            changed = False
            progress_at = job.progress_at or job.accepted_at or now
            if outcome.progress is not None and outcome.progress != job.progress:
                fields.update(progress=outcome.progress, progress_at=now)
                progress_at = now
                changed = True
            if outcome.provider_status != job.provider_status:
                fields["provider_status"] = outcome.provider_status
                changed = True
            if outcome.state is TaskState.RUNNING and job.started_at is None:
                fields["started_at"] = now
                changed = True
            # Deadlines and stalls are judged only on an answer that came after they passed.
            limits = self.settings.limits_for(job.provider)
            if now > deadline:
                await self._time_out(
                    job,
                    provider,
                    reasons.deadline_passed(provider.display_name, deadline - (job.accepted_at or now)),
                )
                continue
            progress = outcome.progress if outcome.progress is not None else job.progress
            if (
                limits.stall is not None
                and progress is not None
                and not job.params.get("off_peak")
                and now - progress_at > limits.stall
            ):
                await self._time_out(
                    job,
                    provider,
                    reasons.stalled(provider.display_name, limits.stall, progress),
                )
                continue
            next_check = min(now + timedelta(seconds=self._interval(job, now)), deadline)
            if limits.stall is not None and progress is not None and not job.params.get("off_peak"):
                next_check = min(next_check, max(now, progress_at + limits.stall))
            fields["next_check_at"] = max(next_check, now)
            releases[job.id] = fields
            if changed:
                visible.append(job.id)
        for job in await self._returns.give_back(releases, read=visible):
            self._publish(job)

    def _first_check(self, job: Job) -> float:
        if job.provider in self.settings.callback_providers:
            return self.settings.callback_poll_interval
        return self.settings.poll_interval

    def _request_capacity(self, provider: VideoProvider) -> int:
        # One request answers many tasks for a batching provider; otherwise a few are in flight.
        return 2 if provider.poll_batch_size > 1 else self.settings.max_polls_in_flight

    def _request_slots(self, provider: VideoProvider) -> asyncio.Semaphore:
        slots = self._poll_slots.get(provider.name)
        if slots is None:
            slots = asyncio.Semaphore(self._request_capacity(provider))
            self._poll_slots[provider.name] = slots
        return slots

    def _deadline(self, job: Job) -> datetime:
        limits = self.settings.limits_for(job.provider)
        span = limits.off_peak_deadline if job.params.get("off_peak") else limits.deadline
        return (job.accepted_at or job.updated_at) + span

    def _interval(self, job: Job, now: datetime) -> float:
        if job.provider in self.settings.callback_providers:
            longest = self.settings.off_peak_poll_interval if job.params.get("off_peak") else 0.0
            return max(self.settings.callback_poll_interval, longest)
        if job.params.get("off_peak"):
            return self.settings.off_peak_poll_interval
        age = (now - (job.accepted_at or now)).total_seconds()
        # Long runs are checked less often: most of them take minutes, some take an hour.
        factor = 1 if age < 300 else 2 if age < 900 else 4
        return min(self.settings.max_poll_interval, self.settings.poll_interval * factor)

    async def _finished_at_provider(self, job: Job, provider: VideoProvider, status: TaskStatus) -> None:
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
                job.id,
                state,
                expect={JobState.RUNNING},
                owner=self.owner,
                error_kind=status.error_kind.value if status.error_kind else None,
                error_reason=status.error_reason,
                detail=f"{provider.display_name} reported {status.provider_status or status.state.value}",
                **fields,
            )
        except InvalidTransition:
            return  # cancelled meanwhile: that answer is not news any more
        self._publish(job)
        self._queue_changed(job.provider)

    async def _time_out(self, job: Job, provider: VideoProvider, reason: str) -> None:
        if provider.can_cancel and job.task_id:
            try:
                await provider.cancel(TaskRef(job.task_id, Operation(job.operation)))
            except ProviderError as exc:
                log.info("job %s: cancel after its deadline did not go through (%s)", job.id, exc)
        await self._end(job, JobState.TIMED_OUT, None, reason)

    # Queue timeouts.

    async def _expire_queue(self) -> None:
        timeout = self.settings.queue_timeout
        reason = reasons.queue_timeout(timeout)
        for job in await self.store.expire_queued(self.store.now() - timeout, reason):
            log.info("job %d: timed_out (%s)", job.id, reason)
            if self._observer is not None:
                self._observer.job_finished(job)
            self._publish(job)
            self._queues_changed.add(job.provider)

    async def _update_positions(self, provider: str) -> None:
        changed = {
            job_id: position
            for position, (job_id, shown) in enumerate(await self.store.queue_order(provider), start=1)
            if shown != position
        }
        if not changed:
            return
        await self.store.set_queue_positions(changed)
        for job in await self.store.get_jobs(list(changed)):
            if job.state is JobState.QUEUED:
                self._publish(job)

    # Cancel.

    async def _cancel_running(self, job: Job) -> Job:
        provider = self.providers.get(job.provider)
        name = provider.display_name if provider else job.provider
        if provider is not None and provider.can_cancel:
            try:
                await provider.cancel(TaskRef(job.task_id or "", Operation(job.operation)))
                reason = reasons.CANCELLED_STOPPED.format(provider=name)
            except CancelNotPossible:
                reason = reasons.CANCELLED_TOO_LATE.format(provider=name)
            except ProviderError as exc:
                raise JobNotCancellable(
                    reasons.CANCEL_UNREACHABLE.format(provider=name, job_id=job.id, detail=exc.message)
                ) from exc
        else:
            reason = reasons.CANCELLED_UNSTOPPABLE.format(provider=name)
        try:
            cancelled = await self._finish(
                job, JobState.CANCELLED, ErrorKind.CANCELLED, reason, expect=JobState.RUNNING
            )
        except InvalidTransition:
            return await self._get(job.id)
        self._queue_changed(job.provider)
        return cancelled

    # Helpers.

    async def _end(self, job: Job, state: JobState, kind: ErrorKind | None, reason: str) -> None:
        """Finish a job this process holds; if it lost the job meanwhile, whoever has it decides."""
        with contextlib.suppress(InvalidTransition):
            await self._finish(job, state, kind, reason, expect=job.state, owner=self.owner)
            self._queue_changed(job.provider)

    async def _finish(
        self,
        job: Job,
        state: JobState,
        kind: ErrorKind | None,
        reason: str,
        *,
        expect: JobState | None = None,
        owner: str | None = None,
    ) -> Job:
        job = await self._move(
            job.id,
            state,
            expect={expect} if expect is not None else None,
            owner=owner,
            error_kind=kind.value if kind else None,
            error_reason=reason,
            detail=reason,
        )
        self._publish(job)
        return job

    async def _move(
        self,
        job_id: int,
        state: JobState,
        *,
        detail: str = "",
        expect: set[JobState] | None = None,
        owner: str | None = None,
        **fields: Any,
    ) -> Job:
        """Every state change goes through here: the ledger records it, the log gets one line."""
        job = await self.store.transition(job_id, state, detail=detail, expect=expect, owner=owner, **fields)
        log.info("job %d: %s (%s)", job_id, state.value, detail)
        if state.finished and self._observer is not None:
            self._observer.job_finished(job)
        return job

    def _refused(self, provider: str, endpoint: str, error: ProviderError) -> None:
        if self._observer is not None:
            self._observer.refused(provider, endpoint, error)

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
            try:
                for subscriber in self._subscribers:
                    try:
                        await subscriber(job)
                    except Exception:
                        error_id = secrets.token_hex(4)
                        log.exception("job %s: a subscriber failed (error %s)", job.id, error_id)
            finally:
                self._outbox.task_done()


def _refusal_sentence(provider: VideoProvider, exc: ProviderError) -> str:
    name = provider.display_name
    if exc.kind is ErrorKind.CREDENTIALS:
        return reasons.CREDENTIALS.format(provider=name)
    if exc.kind is ErrorKind.INSUFFICIENT_CREDITS:
        return reasons.OUT_OF_CREDITS.format(provider=name)
    if exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE):
        return reasons.UNAVAILABLE.format(provider=name, detail=exc.message.rstrip("."))
    return reasons.REFUSED.format(provider=name, detail=exc.message.rstrip("."))

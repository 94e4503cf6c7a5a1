"""The job ledger's records: states, jobs and events."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where a job is. It ends in exactly one of the finished states."""

    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.REJECTED, JobState.CANCELLED, JobState.TIMED_OUT})
UNFINISHED = frozenset({JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING})

#: Every allowed state change; anything else is refused.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.SUBMITTING, JobState.CANCELLED, JobState.FAILED, JobState.TIMED_OUT}),
    JobState.SUBMITTING: frozenset(
        {JobState.RUNNING, JobState.QUEUED, JobState.FAILED, JobState.REJECTED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.REJECTED, JobState.CANCELLED, JobState.TIMED_OUT}
    ),
    **{state: frozenset() for state in FINISHED},
}


class InvalidTransition(Exception):
    """A state change the state machine does not allow (the job moved on, or a bug)."""

    def __init__(self, job_id: int, current: JobState, wanted: JobState) -> None:
        super().__init__(f"job {job_id} cannot go from {current} to {wanted}")
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


def can_transition(current: JobState, wanted: JobState) -> bool:
    """Whether the state machine allows ``current`` to become ``wanted``."""
    return wanted in TRANSITIONS[current]


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a command hands the ledger to create a job."""

    channel_id: int
    user_id: int
    provider: str
    operation: str
    params: dict[str, Any]
    #: Where the prepared input lives and what it is (path, kind, format, size).
    media: dict[str, Any]
    guild_id: int | None = None
    model: str | None = None
    message_id: int | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: datetime | None = None
    #: The largest file the interaction may upload, in bytes.
    upload_limit: int | None = None
    parent_id: int | None = None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The intake record this job comes from; it is removed in the transaction that writes the job.
    intake_id: int | None = None
    #: What the job's price depends on; its estimate is taken from earlier jobs of the same class.
    cost_class: str | None = None
    #: The language of the job's public messages (its card, its delivery), fixed when it is made.
    language: str = "en-US"


@dataclass(frozen=True, slots=True)
class Job:
    """One job as the ledger has it."""

    id: int
    key: str
    guild_id: int | None
    channel_id: int
    user_id: int
    message_id: int | None
    provider: str
    operation: str
    model: str | None
    params: dict[str, Any]
    media: dict[str, Any]
    task_id: str | None
    state: JobState
    progress: float | None
    queue_position: int | None
    provider_status: str | None
    video_url: str | None
    cover_url: str | None
    credits: float | None
    error_kind: str | None
    error_reason: str | None
    submit_attempts: int
    poll_failures: int
    cancel_requested: bool
    created_at: datetime
    submitted_at: datetime | None
    accepted_at: datetime | None
    started_at: datetime | None
    progress_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    updated_at: datetime
    delivered: bool
    delivered_at: datetime | None
    application_id: int | None
    interaction_token: str | None
    token_expires_at: datetime | None
    upload_limit: int | None
    parent_id: int | None
    #: When the scheduler next has work on the job (a send, a check, a poll); None once finished.
    next_check_at: datetime | None = None
    #: Who holds work on the job in flight, and until when; an expired lease may be taken over.
    lease_owner: str | None = None
    lease_until: datetime | None = None
    queue_priority: int = 0
    delivery_attempts: int = 0
    #: When the next announcement attempt is due; None for a pending delivery means it was given up.
    delivery_next_at: datetime | None = None
    announce_started_at: datetime | None = None
    #: When Discord refused the interaction token before it was due to expire.
    token_dead_at: datetime | None = None
    #: What the job's price depends on (see ``cost_class``); jobs of one class cost about the same.
    cost_class: str | None = None
    #: The expected cost when the job was written, from earlier jobs of its class; None without history.
    estimated_credits: float | None = None
    #: The language of the job's card and delivery, the server's when the job was made; it never changes.
    language: str = "en-US"

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(
            id=row["id"],
            key=row["key"],
            guild_id=row["guild_id"],
            channel_id=row["channel_id"],
            user_id=row["user_id"],
            message_id=row["message_id"],
            provider=row["provider"],
            operation=row["operation"],
            model=row["model"],
            params=json.loads(row["params"]),
            media=json.loads(row["media"]),
            task_id=row["task_id"],
            state=JobState(row["state"]),
            progress=row["progress"],
            queue_position=row["queue_position"],
            provider_status=row["provider_status"],
            video_url=row["video_url"],
            cover_url=row["cover_url"],
            credits=row["credits"],
            error_kind=row["error_kind"],
            error_reason=row["error_reason"],
            submit_attempts=row["submit_attempts"],
            poll_failures=row["poll_failures"],
            cancel_requested=bool(row["cancel_requested"]),
            created_at=_time(row["created_at"]),
            submitted_at=_maybe_time(row["submitted_at"]),
            accepted_at=_maybe_time(row["accepted_at"]),
            started_at=_maybe_time(row["started_at"]),
            progress_at=_maybe_time(row["progress_at"]),
            finished_at=_maybe_time(row["finished_at"]),
            not_before=_maybe_time(row["not_before"]),
            updated_at=_time(row["updated_at"]),
            delivered=row["delivery"] == "delivered",
            delivered_at=_maybe_time(row["delivered_at"]),
            application_id=row["application_id"],
            interaction_token=row["interaction_token"],
            token_expires_at=_maybe_time(row["token_expires_at"]),
            upload_limit=row["upload_limit"],
            parent_id=row["parent_id"],
            next_check_at=_maybe_time(row["next_check_at"]),
            lease_owner=row["lease_owner"],
            lease_until=_maybe_time(row["lease_until"]),
            queue_priority=row["queue_priority"],
            delivery_attempts=row["delivery_attempts"],
            delivery_next_at=_maybe_time(row["delivery_next_at"]),
            announce_started_at=_maybe_time(row["announce_started_at"]),
            token_dead_at=_maybe_time(row["token_dead_at"]),
            cost_class=row["cost_class"],
            estimated_credits=row["estimated_credits"],
            language=row["language"],
        )

    def __repr__(self) -> str:
        # The interaction token is a credential for 15 minutes: keep it out of logs and reprs.
        return f"Job(id={self.id}, provider={self.provider!r}, state={self.state.value!r}, task_id={self.task_id!r})"


@dataclass(frozen=True, slots=True)
class Usage:
    """How many jobs count against a member's and a server's limits."""

    active: int
    user_today: int
    guild_today: int


@dataclass(frozen=True, slots=True)
class CreditUsage:
    """Credits spent by a member and a server, counted over the jobs the job quotas count.

    A job counts with the credits its provider reported, else its estimate (unfinished jobs hold their
    estimate, so that jobs in flight cannot together overrun a budget), else nothing.
    """

    user_today: float = 0.0
    user_month: float = 0.0
    guild_today: float = 0.0
    guild_month: float = 0.0


@dataclass(frozen=True, slots=True)
class Admission:
    """Limits checked inside the transaction that writes a new job (0: no limit)."""

    day_start: datetime
    active_per_user: int = 0
    per_user_per_day: int = 0
    per_guild_per_day: int = 0
    month_start: datetime | None = None
    #: The server's credit budgets (0: none); checked against the new job's estimate.
    credits_per_day: int = 0
    credits_per_month: int = 0


class LimitReached(Exception):
    """Writing the job would break one of its Admission limits; nothing was written."""

    def __init__(
        self, limit: str, usage: Usage, *, credits: CreditUsage | None = None, estimate: float | None = None
    ) -> None:
        super().__init__(f"limit {limit} reached")
        #: "active", "user_day", "guild_day", "credits_day" or "credits_month".
        self.limit = limit
        self.usage = usage
        self.credits = credits
        #: What the refused job was expected to cost, if anything was known.
        self.estimate = estimate


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One recorded state change (or delivery) of a job."""

    job_id: int
    at: datetime
    from_state: JobState | None
    to_state: JobState
    detail: str


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _maybe_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A server's own rules; None means the environment's default applies."""

    guild_id: int
    disabled_providers: frozenset[str] = frozenset()
    #: Channels the bot answers in; empty means every channel.
    allowed_channels: frozenset[int] = frozenset()
    max_active_per_user: int | None = None
    max_jobs_per_user_per_day: int | None = None
    max_jobs_per_guild_per_day: int | None = None
    log_channel_id: int | None = None
    allow_dm: bool = True
    #: Credits the whole server may spend per UTC day and per UTC month; None: no budget.
    credits_per_day: int | None = None
    credits_per_month: int | None = None
    #: The language of the server's public messages: "auto" (the server's preferred locale) or one of LANGUAGES.
    language: str = "auto"

    @classmethod
    def from_row(cls, row: Any) -> GuildSettings:
        return cls(
            guild_id=row["guild_id"],
            disabled_providers=frozenset(json.loads(row["disabled_providers"])),
            allowed_channels=frozenset(json.loads(row["allowed_channels"])),
            max_active_per_user=row["max_active_per_user"],
            max_jobs_per_user_per_day=row["max_jobs_per_user_per_day"],
            max_jobs_per_guild_per_day=row["max_jobs_per_guild_per_day"],
            log_channel_id=row["log_channel_id"],
            allow_dm=bool(row["allow_dm"]),
            credits_per_day=row["credits_per_day"],
            credits_per_month=row["credits_per_month"],
            language=row["language"],
        )


class IntakeKind(StrEnum):
    """What asked for a job: a command with an attachment, or a click on an earlier job's card."""

    COMMAND = "command"
    RETRY = "retry"
    REROLL = "reroll"
    STYLIZE = "stylize"


@dataclass(frozen=True, slots=True)
class Intake:
    """A command or click that will create a job, recorded before it is acknowledged.

    ``interaction_id`` is Discord's id of the interaction; the job made from it has a key derived
    from it (``job_key``), so making the job again after a restart finds the first one.
    """

    interaction_id: int
    kind: IntakeKind
    channel_id: int
    user_id: int
    provider: str
    operation: str
    params: dict[str, Any]
    created_at: datetime
    guild_id: int | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: datetime | None = None
    upload_limit: int | None = None
    message_id: int | None = None
    source_job_id: int | None = None
    attachment_url: str | None = None
    attachment_name: str | None = None
    attachment_type: str | None = None
    attachment_size: int | None = None
    #: The file in the inputs folder that holds the attachment's bytes, once read.
    upload: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    closed_at: datetime | None = None
    #: Why it ended without a job: "expired", "unacknowledged", "restarted", "refused".
    outcome: str | None = None
    #: The server's language when the command came: its job's card and delivery speak it.
    language: str = "en-US"

    @property
    def job_key(self) -> str:
        return intake_job_key(self.interaction_id)

    @classmethod
    def from_row(cls, row: Any) -> Intake:
        def when(name: str) -> datetime | None:
            return datetime.fromisoformat(row[name]) if row[name] else None

        return cls(
            interaction_id=row["interaction_id"],
            kind=IntakeKind(row["kind"]),
            channel_id=row["channel_id"],
            user_id=row["user_id"],
            provider=row["provider"],
            operation=row["operation"],
            params=json.loads(row["params"]),
            created_at=datetime.fromisoformat(row["created_at"]),
            guild_id=row["guild_id"],
            application_id=row["application_id"],
            interaction_token=row["interaction_token"],
            token_expires_at=when("token_expires_at"),
            upload_limit=row["upload_limit"],
            message_id=row["message_id"],
            source_job_id=row["source_job_id"],
            attachment_url=row["attachment_url"],
            attachment_name=row["attachment_name"],
            attachment_type=row["attachment_type"],
            attachment_size=row["attachment_size"],
            upload=row["upload"],
            lease_owner=row["lease_owner"],
            lease_until=when("lease_until"),
            closed_at=when("closed_at"),
            outcome=row["outcome"],
            language=row["language"],
        )


def intake_job_key(interaction_id: int) -> str:
    """The key of the job made from an interaction: the same on every try, in every process."""
    return uuid.uuid5(_INTAKE_KEYS, str(interaction_id)).hex


_INTAKE_KEYS = uuid.UUID("6f1c2a4e-3b5d-4e8f-9a7c-1d2e3f405162")


#: The ended states that count as a provider's errors. A job refused by moderation was judged on its content
#: and a cancelled one was stopped by a member: neither says the provider is unwell.
ERROR_STATES = frozenset({JobState.FAILED, JobState.TIMED_OUT})


@dataclass(frozen=True, slots=True)
class ProviderFigures:
    """What /status shows of one provider, read from the ledger."""

    queued: int = 0
    #: Jobs being sent and jobs at the provider: both hold one of the provider's running places.
    running: int = 0
    last_success: datetime | None = None
    ended_last_hour: int = 0
    #: Of those, the jobs that ended in one of ERROR_STATES.
    errors_last_hour: int = 0
    #: The median seconds from acceptance to success over the last day, by model (by operation where a
    #: provider has no models).
    run_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        return self.queued + self.running

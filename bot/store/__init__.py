"""The job ledger: the one source of truth for jobs, and the only code that writes SQL."""

from bot.store.models import (
    FINISHED,
    UNFINISHED,
    Admission,
    CreditUsage,
    GuildSettings,
    Intake,
    IntakeKind,
    InvalidTransition,
    Job,
    JobEvent,
    JobState,
    LimitReached,
    NewJob,
    Usage,
    can_transition,
    intake_job_key,
)
from bot.store.store import DueTimes, Store, StoreError

__all__ = [
    "FINISHED",
    "UNFINISHED",
    "Admission",
    "CreditUsage",
    "DueTimes",
    "GuildSettings",
    "Intake",
    "IntakeKind",
    "InvalidTransition",
    "Job",
    "JobEvent",
    "JobState",
    "LimitReached",
    "NewJob",
    "Store",
    "StoreError",
    "Usage",
    "can_transition",
    "intake_job_key",
]

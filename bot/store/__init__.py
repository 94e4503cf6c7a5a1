"""The job ledger: the one source of truth for jobs, and the only code that writes SQL."""

from bot.store.models import (
    FINISHED,
    UNFINISHED,
    InvalidTransition,
    Job,
    JobEvent,
    JobState,
    NewJob,
    can_transition,
)
from bot.store.store import Store, StoreError

__all__ = [
    "FINISHED",
    "UNFINISHED",
    "InvalidTransition",
    "Job",
    "JobEvent",
    "JobState",
    "NewJob",
    "Store",
    "StoreError",
    "can_transition",
]

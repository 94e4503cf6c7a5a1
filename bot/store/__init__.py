"""The job ledger: the one source of truth for jobs, and the only code that writes SQL."""

from bot.store.models import (
    FINISHED,
    UNFINISHED,
    GuildSettings,
    InvalidTransition,
    Job,
    JobEvent,
    JobState,
    NewJob,
    can_transition,
)
from bot.store.store import Store, StoreError, Usage

__all__ = [
    "FINISHED",
    "UNFINISHED",
    "GuildSettings",
    "InvalidTransition",
    "Job",
    "JobEvent",
    "JobState",
    "NewJob",
    "Store",
    "StoreError",
    "Usage",
    "can_transition",
]

"""What the scheduler tells whoever watches it (the metrics), without knowing who that is."""

from __future__ import annotations

from typing import Protocol

from bot.store import Job
from providers import ProviderError


class JobObserver(Protocol):
    def job_created(self, job: Job) -> None:
        """A job was recorded, queued."""

    def job_finished(self, job: Job) -> None:
        """A job reached its final state (``job`` as the ledger has it now)."""

    def refused(self, provider: str, endpoint: str, error: ProviderError) -> None:
        """A provider answered a job's create or poll with an error."""

"""The provider-neutral interface: the only thing the rest of the bot sees of a provider."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from providers.callbacks import Callback, CallbackNews, CallbackRefused
from providers.errors import CancelNotPossible, ErrorKind, InvalidRequest, SubmitOutcomeUnknown
from providers.media import PreparedImage, PreparedVideo, VideoLimits, prepare_image, prepare_video
from providers.options import Capabilities, Operation, Params


class TaskState(StrEnum):
    """A provider task's state, the same for every provider."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Refused by the provider's content review.
    REJECTED = "rejected"

    @property
    def finished(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.REJECTED)


@dataclass(frozen=True, slots=True)
class TaskRef:
    """A provider task to poll or cancel; the operation picks the endpoint where a provider needs it."""

    task_id: str
    operation: Operation = Operation.IMAGE_TO_VIDEO


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What a poll learned about one task."""

    task_id: str
    state: TaskState
    #: 0 to 1, where the provider reports progress.
    progress: float | None = None
    video_url: str | None = None
    cover_url: str | None = None
    credits: float | None = None
    error_kind: ErrorKind | None = None
    error_reason: str | None = None
    #: The provider's own status value, for logs.
    provider_status: str = ""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated job: option values by their slash-command names and the prepared input."""

    operation: Operation
    params: Params
    media: PreparedImage | PreparedVideo


@dataclass(frozen=True, slots=True)
class Submission:
    """The provider accepted a job."""

    task_id: str
    credits: float | None = None


@dataclass(frozen=True, slots=True)
class AccountCheck:
    """The result of proving the credentials work."""

    credits: float | None
    detail: str


class VideoProvider(ABC):
    """A video generation provider, seen through its HTTP API only."""

    #: Short lowercase name, as in the slash command and the database.
    name: ClassVar[str]
    #: The provider's name as users know it.
    display_name: ClassVar[str]
    capabilities: ClassVar[Mapping[Operation, Capabilities]]
    #: Whether the API can cancel a task.
    can_cancel: ClassVar[bool] = False
    #: How many tasks one poll request can cover.
    poll_batch_size: ClassVar[int] = 1

    def validate(self, operation: Operation, params: Params) -> list[str]:
        """Every violation of the provider's rules, as sentences; empty when the request is valid."""
        caps = self.capabilities.get(operation)
        if caps is None:
            return [f"{self.display_name} cannot do {operation.value.replace('_', ' ')}."]
        return caps.validate(params)

    def prepare_media(self, operation: Operation, data: bytes) -> PreparedImage | PreparedVideo:
        """Turn uploaded bytes into what the provider accepts; raises MediaRejected otherwise."""
        limits = self.capabilities[operation].media
        if isinstance(limits, VideoLimits):
            return prepare_video(data, limits)
        return prepare_image(data, limits)

    def _require_valid(self, request: GenerationRequest) -> None:
        problems = self.validate(request.operation, request.params)
        if problems:
            raise InvalidRequest(self.display_name, " ".join(problems))

    @abstractmethod
    async def submit(self, request: GenerationRequest, *, idempotency_key: str) -> Submission:
        """Send one job. The caller passes a new idempotency key for every definite attempt (the job key and the
        attempt number) and the same key again only to replay a send whose outcome is unknown."""

    @abstractmethod
    async def poll(self, tasks: Sequence[TaskRef]) -> list[TaskStatus]:
        """The status of each task, in the order given. Batches where the API allows it."""

    async def recover_submission(
        self, request: GenerationRequest, *, idempotency_key: str, since: datetime
    ) -> Submission | None:
        """After a submit whose outcome is unknown (a crash or a lost answer): the task it created, or None
        when it created none and the job may be sent again.

        Raises SubmitOutcomeUnknown when the provider offers no way to tell; each provider's override says
        its rule.
        """
        raise SubmitOutcomeUnknown(
            self.display_name, f"{self.display_name} offers no way to find a task by the bot's job key"
        )

    async def cancel(self, task: TaskRef) -> None:
        """Ask the provider to cancel a task; raises CancelNotPossible where it cannot."""
        raise CancelNotPossible(self.display_name, f"{self.display_name} has no way to cancel a task.")

    @property
    def calls_back(self) -> bool:
        """Whether the provider calls this bot back when its tasks change (so they are polled rarely)."""
        return False

    def read_callback(self, callback: Callback) -> CallbackNews:
        """What a callback says, once it proved to come from the provider; raises CallbackRefused otherwise."""
        raise CallbackRefused(404, f"{self.display_name} callbacks are not taken")

    @abstractmethod
    async def check(self) -> AccountCheck:
        """Prove the credentials work with the cheapest call the API offers."""

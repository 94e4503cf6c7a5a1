"""Vidu's documented requests and responses (seed 004; notes/providers.md §3).

Auth is ``Authorization: Token <key>`` (relays use ``Bearer``). Errors come as HTTP 4xx/5xx with
``{code, reason, message, metadata}``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.answers import Answer

Model = Literal[
    "viduq3-pro",
    "viduq3-turbo",
    "viduq2",
    "viduq2-pro",
    "viduq2-turbo",
    "viduq2-pro-fast",
    "viduq1",
    "viduq1-classic",
]
MODELS: tuple[Model, ...] = (
    "viduq3-pro",
    "viduq3-turbo",
    "viduq2",
    "viduq2-pro",
    "viduq2-turbo",
    "viduq2-pro-fast",
    "viduq1",
    "viduq1-classic",
)
Resolution = Literal["540p", "720p", "1080p"]
RESOLUTIONS: tuple[Resolution, ...] = ("540p", "720p", "1080p")
MovementAmplitude = Literal["auto", "small", "medium", "large"]
MOVEMENT_AMPLITUDES: tuple[MovementAmplitude, ...] = ("auto", "small", "medium", "large")
PROMPT_MAX_LENGTH = 2000
PAYLOAD_MAX_LENGTH = 1048576


class State(StrEnum):
    """A task's ``state``."""

    CREATED = "created"
    QUEUEING = "queueing"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"


class Reason(StrEnum):
    """The ``reason`` (error code) values the client treats specially (platform.vidu.com error codes)."""

    BAD_REQUEST = "BadRequest"
    OPERATION_IN_PROCESS = "OperationInProcess"
    TASK_PROMPT_POLICY_VIOLATION = "TaskPromptPolicyViolation"
    AUDIT_SUBMIT_ILLEGAL = "AuditSubmitIllegal"
    CREATION_POLICY_VIOLATION = "CreationPolicyViolation"
    CREDIT_INSUFFICIENT = "CreditInsufficient"
    MODEL_UNAVAILABLE = "ModelUnavailable"
    USER_CANCELLED = "UserCancelled"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    TASK_NOT_FOUND = "TaskNotFound"
    QUOTA_EXCEEDED = "QuotaExceeded"
    TOO_MANY_REQUESTS = "TooManyRequests"
    SYSTEM_THROTTLING = "SystemThrottling"
    INTERNAL_SERVICE_FAILURE = "InternalServiceFailure"


class Img2VideoRequest(BaseModel):
    """POST /ent/v2/img2video (seed 004). Vidu refuses fields it does not know (FieldUnwanted)."""

    model_config = ConfigDict(extra="forbid")

    model: Model
    #: Exactly one image: a URL or a ``data:image/...;base64,`` URI.
    images: list[str] = Field(min_length=1, max_length=1)
    prompt: str = Field(max_length=PROMPT_MAX_LENGTH)
    #: Sound and speech with the video; true by default on the q3 models; not with off_peak.
    audio: bool | None = None
    #: Only used when audio is on.
    voice_id: str | None = None
    #: Let Vidu rewrite the prompt (costs 10 more credits).
    is_rec: bool | None = None
    duration: int | None = None
    #: 0 or absent means a random seed.
    seed: int | None = None
    resolution: Resolution | None = None
    #: Ignored by viduq2.
    movement_amplitude: MovementAmplitude | None = None
    #: Echoed back untouched: the job's correlation key.
    payload: str | None = Field(None, max_length=PAYLOAD_MAX_LENGTH)
    #: Cheaper, finished within 48 h or cancelled and refunded.
    off_peak: bool | None = None
    watermark: bool | None = None
    wm_position: Literal["1", "2", "3", "4"] | None = None
    wm_url: str | None = None
    meta_data: str | None = None
    callback_url: str | None = None


class CreateResponse(Answer):
    """The created task (seed 004's response schema)."""

    task_id: str
    type: str = ""
    state: str = State.CREATED
    model: str = ""
    style: str = ""
    prompt: str = ""
    images: list[str] = Field(default_factory=list)
    duration: int | None = None
    seed: int | None = None
    aspect_ratio: str = ""
    resolution: str = ""
    movement_amplitude: str = ""
    created_at: str = ""
    credits: int | None = None
    payload: str = ""
    cus_priority: int | None = None
    off_peak: bool | None = None
    watermark: bool | None = None
    is_rec: bool | None = None
    wm_position: str = ""
    wm_url: str = ""
    meta_data: str = ""
    client_request_id: str = ""
    err_code: str = ""


class CreationVideoResolution(Answer):
    width: int
    height: int


class CreationVideo(Answer):
    duration: float | None = None
    fps: float | None = None
    resolution: CreationVideoResolution | None = None


class Creation(Answer):
    """One generated video; its URLs expire (1 to 24 h)."""

    id: str = ""
    url: str = ""
    cover_url: str = ""
    watermarked_url: str = ""
    video: CreationVideo | None = None


class TaskCreations(Answer):
    """GET /ent/v2/tasks/{id}/creations, and one task of the task list."""

    id: str
    #: See State; an undocumented value (or none) means "keep polling".
    state: str = ""
    err_code: str = ""
    #: Percent done, where Vidu reports it (ComfyUI reads it; not in the seed).
    progress: float | None = None
    credits: int | None = None
    payload: str = ""
    bgm: bool | None = None
    off_peak: bool | None = None
    creations: list[Creation] = Field(default_factory=list)
    created_at: str = ""


class TaskList(Answer):
    """GET /ent/v2/tasks."""

    tasks: list[TaskCreations] = Field(default_factory=list)
    next_page_token: str = ""


class CreditRemain(Answer):
    type: str
    credit_remain: int = 0
    concurrency_limit: int | None = None
    current_concurrency: int | None = None
    queue_count: int | None = None


class Credits(Answer):
    """GET /ent/v2/credits."""

    remains: list[CreditRemain] = Field(default_factory=list)
    packages: list[object] = Field(default_factory=list)


class ErrorBody(Answer):
    """The body of every error answer."""

    code: int | None = None
    reason: str = ""
    message: str = ""
    metadata: dict[str, object] = Field(default_factory=dict)

"""HiDream's documented requests and responses (seeds 000, 001 and 003; notes/providers.md §1).

Every call answers HTTP 200 with the envelope ``{code, message, request_id, result}``; ``code`` 0 is
success and anything else is a refusal.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from providers.answers import Answer

Resolution = Literal["960*960", "1280*720", "720*1280"]
RESOLUTIONS: tuple[Resolution, ...] = ("960*960", "1280*720", "720*1280")


class Style(StrEnum):
    """The video stylization styles of seed 001 (spelled as the API spells them)."""

    BARBIE_DOLL = "barbie_doll"
    INK_WASH = "ink_wash"
    VAN_GOPH = "van_goph"
    HAYAO_MIYAZAKI = "hayao_miyazaki"
    CYBER_PUNK = "cyber_punk"
    CARTOON = "cartoon"
    ANIME = "anime"
    VECTOR_ART = "vector_art"
    ABSTRACT = "abstract"
    WATERCOLOR = "watercolor"


class Module(StrEnum):
    """The generation modules the result queries take in their path."""

    TXT2VIDEO = "txt2video"
    IMG2VIDEO = "img2video"
    VIDEO_EDIT = "video_edit"


class SubTaskStatus(IntEnum):
    """``task_status`` of a sub-task (seed 003)."""

    WAITING = 0
    DONE = 1
    PROCESSING = 2
    FAILED = 3
    MODERATION_REJECTED = 4


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Img2VideoRequest(_Request):
    """POST /api-pub/gw/v3/video/img2video/async (seed 000)."""

    #: An image URL or plain base64 (no ``data:`` prefix).
    image: str
    prompt: str = ""
    negative_prompt: str = ""
    version: Literal["v2"] = "v2"
    resolution: Resolution | None = None
    request_id: str = ""
    camera_move_horizontal: int = Field(0, ge=-5, le=5)
    camera_move_vertical: int = Field(0, ge=-5, le=5)
    camera_move_depth: int = Field(0, ge=-5, le=5)
    motion_strength: float = Field(9.0, ge=0, le=30)
    notify_url: str | None = None


class VideoEditRequest(_Request):
    """POST /api-pub/gw/v2/video/video_edit/async (seed 001); one of prompt or style is required."""

    #: The video as base64 or a URL.
    video_name: str
    prompt: str | None = None
    style: Style | None = None
    request_id: str = ""
    notify_url: str | None = None


class BatchQueryRequest(_Request):
    """POST /api-pub/gw/v2/video/{module}/async/results/batch (seed 003)."""

    task_id_list: list[str]
    notify_url: str | None = None


class SubmitResult(Answer):
    """``result`` of both submits."""

    task_id: str
    #: One sub-task per generated output.
    sub_task_ids: list[str] = Field(default_factory=list)


class SubTaskResult(Answer):
    """One generated output of a task."""

    sub_task_id: str = ""
    #: See SubTaskStatus; the official client treats -5..-1 as transient, so any int is read.
    task_status: int
    #: Progress from 0 to 1, two decimals.
    task_completion: float = 0.0
    video: str = ""
    #: The watermarked copy.
    video_wm: str = ""


class TaskResult(Answer):
    """One task in a result query; ``sub_task_results`` is empty for an unknown task id."""

    task_id: str
    sub_task_results: list[SubTaskResult] = Field(default_factory=list)


class BatchResult(RootModel[list[TaskResult]]):
    """``result`` of the batch query: one entry per requested task id."""


class Envelope(Answer):
    """The wrapper around every answer."""

    code: int
    message: str = ""
    request_id: str = ""
    result: object = None

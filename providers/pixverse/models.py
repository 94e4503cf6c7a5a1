"""PixVerse's documented requests and responses (seed 002; notes/providers.md §2).

Every call needs ``API-KEY`` and a fresh ``Ai-trace-id``; answers are HTTP 200 with the envelope
``{ErrCode, ErrMsg, Resp}`` where ``ErrCode`` 0 is success.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.answers import Answer

Model = Literal["v3.5", "v4", "v4.5", "v5", "v5.5", "v5.6", "v6", "c1"]
MODELS: tuple[Model, ...] = ("v3.5", "v4", "v4.5", "v5", "v5.5", "v5.6", "v6", "c1")
Quality = Literal["360p", "540p", "720p", "1080p"]
QUALITIES: tuple[Quality, ...] = ("360p", "540p", "720p", "1080p")
MotionMode = Literal["normal", "fast"]
ThinkingType = Literal["enabled", "disabled", "auto"]
#: The seed lists "day", a typo: PixVerse's MCP server and ComfyUI both list "clay" (notes §4).
STYLES = ("anime", "3d_animation", "clay", "cyberpunk", "comic")
#: Misspellings still read, with the style they stand for.
STYLE_ALIASES = {"day": "clay"}
CAMERA_MOVEMENTS = (
    "horizontal_left",
    "horizontal_right",
    "vertical_up",
    "vertical_down",
    "zoom_in",
    "zoom_out",
    "crane_up",
    "quickly_zoom_in",
    "quickly_zoom_out",
    "smooth_zoom_in",
    "camera_rotation",
    "robo_arm",
    "super_dolly_out",
    "whip_pan",
    "hitchcock",
    "left_follow",
    "right_follow",
    "pan_left",
    "pan_right",
    "fix_bg",
)
PROMPT_MAX_LENGTH = 2048
LIP_SYNC_MAX_LENGTH = 140
SEED_MAX = 2147483647


class VideoStatus(IntEnum):
    """``status`` of a video (notes §2)."""

    SUCCEEDED = 1
    GENERATING = 5
    DELETED = 6
    MODERATION_FAILED = 7
    FAILED = 8


class ErrCode(IntEnum):
    """The ``ErrCode`` values the client treats specially (notes §2, official table)."""

    OK = 0
    EMPTY_PARAMETER = 400011
    INVALID_ACCOUNT = 400012
    INVALID_BINDING = 400013
    INVALID_PARAMETER = 400017
    PROMPT_TOO_LONG = 400018
    NEGATIVE_PROMPT_TOO_LONG = 400019
    INVALID_IMAGE_ID = 400032
    NOT_FOUND = 500008
    NO_PERMISSION = 500020
    IMAGE_TOO_LARGE = 500030
    IMAGE_UNREADABLE = 500031
    IMAGE_FORMAT = 500032
    IMAGE_DIMENSIONS = 500033
    UPLOAD_FAILED = 500041
    IMAGE_PATH = 500042
    CONCURRENCY_LIMIT = 500044
    IMAGE_MODERATION = 500054
    EFFECTS_LIMIT = 500060
    INPUT_MODERATION = 500063
    CONTENT_DELETED = 500064
    HIGH_LOAD = 500069
    INSUFFICIENT_BALANCE = 500090
    INTERNAL_DB_ERROR = 500100


class GenerateRequest(BaseModel):
    """POST /openapi/v2/video/img/generate (seed 002), plus ``negative_prompt`` from the API reference."""

    model_config = ConfigDict(extra="forbid")

    duration: int
    img_id: int | None = None
    #: Only for multi-image templates.
    img_ids: list[int] | None = None
    model: Model
    prompt: str = Field(max_length=PROMPT_MAX_LENGTH)
    negative_prompt: str | None = Field(None, max_length=PROMPT_MAX_LENGTH)
    quality: Quality
    style: str | None = None
    template_id: int | None = None
    #: Not on v5 and later; "fast" cannot make 8 s.
    motion_mode: MotionMode | None = None
    #: Only v4 and v4.5.
    camera_movement: str | None = None
    #: Only v5.5, v5.6, v6 and c1.
    generate_audio_switch: bool | None = None
    #: Only v5.5 and v6.
    generate_multi_clip_switch: bool | None = None
    #: Only below v5 (or with a template).
    sound_effect_switch: bool | None = None
    sound_effect_content: str | None = None
    lip_sync_tts_switch: bool | None = None
    lip_sync_tts_content: str | None = Field(None, max_length=LIP_SYNC_MAX_LENGTH)
    lip_sync_tts_speaker_id: str | None = None
    #: Only v5.5, v5.6 and v6.
    thinking_type: ThinkingType | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX)

    @model_validator(mode="after")
    def _one_image(self) -> GenerateRequest:
        # The seed marks both required, but img_ids is only for multi-image templates.
        if (self.img_id is None) == (self.img_ids is None):
            raise ValueError("exactly one of img_id and img_ids is needed")
        return self


class UploadImageResponse(Answer):
    """``Resp`` of POST /openapi/v2/image/upload."""

    img_id: int
    img_url: str = ""


class GenerateResponse(Answer):
    """``Resp`` of a generate call; the credits field is spelled both ways in the wild."""

    video_id: int
    credits: int | None = None
    credit: int | None = None


class VideoResult(Answer):
    """``Resp`` of GET /openapi/v2/video/result/{video_id}."""

    id: int
    #: See VideoStatus; unknown values (and none at all) mean "keep polling".
    status: int | None = None
    url: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    style: str | None = None
    size: int | None = None
    outputWidth: int | None = None
    outputHeight: int | None = None
    resolution_ratio: int | None = None
    create_time: str | None = None
    modify_time: str | None = None
    has_audio: bool | None = None
    credits: int | None = None


class Balance(Answer):
    """``Resp`` of GET /openapi/v2/account/balance."""

    account_id: int
    credit_monthly: int = 0
    credit_package: int = 0


class Envelope(Answer):
    """The wrapper around every answer."""

    ErrCode: int
    ErrMsg: str = ""
    Resp: object = None

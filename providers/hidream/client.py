"""The HiDream client: image to video, video stylization, batch and single result queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
from pydantic import SecretStr

from providers.base import (
    AccountCheck,
    GenerationRequest,
    Submission,
    TaskRef,
    TaskState,
    TaskStatus,
    VideoProvider,
)
from providers.errors import (
    CredentialsRefused,
    ErrorKind,
    InvalidRequest,
    ModerationRejected,
    ProviderError,
    RateLimited,
    SubmitOutcomeUnknown,
)
from providers.hidream.capabilities import CAPABILITIES
from providers.hidream.models import (
    RESOLUTIONS,
    BatchQueryRequest,
    BatchResult,
    Envelope,
    Img2VideoRequest,
    Module,
    Resolution,
    Style,
    SubmitResult,
    SubTaskStatus,
    TaskResult,
    VideoEditRequest,
)
from providers.http import (
    HttpResponse,
    ProviderHTTP,
    RetryPolicy,
    decode_json,
    error_for_status,
    response_message,
    validate_model,
)
from providers.media import PreparedImage, PreparedVideo
from providers.options import Operation

NAME = "HiDream"
DEFAULT_BASE_URL = "https://www.hidreamai.com"
#: Undocumented maximum; a batch of this many stays a small request.
BATCH_SIZE = 50

# HiDream publishes no error-code table, so a refusal's kind is read from its message.
_MODERATION_WORDS = ("审核", "moderation", "review", "sensitive", "illegal", "violat", "nsfw")
_CREDENTIAL_WORDS = ("token", "unauthor", "auth", "api key", "apikey", "登录", "鉴权")
_LIMIT_WORDS = ("too many", "rate limit", "frequen", "concurren", "频繁", "并发", "限流")

_OPERATION_MODULE = {Operation.IMAGE_TO_VIDEO: Module.IMG2VIDEO, Operation.STYLIZE: Module.VIDEO_EDIT}


class HiDream(VideoProvider):
    """HiDream (Pixeling) API: ``Authorization: Bearer <token>``, JSON envelopes with ``code``."""

    name = "hidream"
    display_name = NAME
    capabilities: ClassVar = CAPABILITIES
    poll_batch_size = BATCH_SIZE

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._key = api_key
        self._http = ProviderHTTP(
            session,
            provider=NAME,
            base_url=base_url,
            secrets=[api_key.get_secret_value()],
            timeout=timeout,
            retry=retry,
        )
        self.batch_size = batch_size

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.get_secret_value()}", "Content-Type": "application/json"}

    # The documented endpoints.

    async def submit_img2video(self, body: Img2VideoRequest) -> SubmitResult:
        """Start an image-to-video task (seed 000)."""
        return await self._post_submit("/api-pub/gw/v3/video/img2video/async", body)

    async def submit_video_edit(self, body: VideoEditRequest) -> SubmitResult:
        """Start a video stylization task (seed 001)."""
        return await self._post_submit("/api-pub/gw/v2/video/video_edit/async", body)

    async def query_batch(self, module: Module, task_ids: Sequence[str]) -> list[TaskResult]:
        """Results of many tasks of one module in one request (seed 003)."""
        body = BatchQueryRequest(task_id_list=list(task_ids))
        return await self._http.request(
            "POST",
            f"/api-pub/gw/v2/video/{module.value}/async/results/batch",
            headers=self._headers(),
            json_body=body.model_dump(exclude_none=True),
            parse=lambda response: validate_model(NAME, BatchResult, _unwrap(response)).root,
            idempotent=True,
        )

    async def query(self, module: Module, task_id: str) -> TaskResult:
        """Result of one task (the single-task query, notes §1 fact 1)."""
        version = "v3" if module is Module.IMG2VIDEO else "v2"
        return await self._http.request(
            "GET",
            f"/api-pub/gw/{version}/video/{module.value}/async/results",
            headers=self._headers(),
            params=[("task_id", task_id)],
            parse=lambda response: validate_model(NAME, TaskResult, _unwrap(response)),
            idempotent=True,
        )

    async def _post_submit(self, path: str, body: Img2VideoRequest | VideoEditRequest) -> SubmitResult:
        return await self._http.request(
            "POST",
            path,
            headers=self._headers(),
            json_body=body.model_dump(mode="json", exclude_none=True),
            parse=lambda response: validate_model(NAME, SubmitResult, _unwrap(response)),
            idempotent=False,
        )

    # The provider-neutral interface.

    async def submit(self, request: GenerationRequest, *, idempotency_key: str) -> Submission:
        # HiDream has no idempotency key: request_id is only echoed back. It still carries the job's
        # key so that support can match a task to a job.
        self._require_valid(request)
        caps = self.capabilities[request.operation]
        params = caps.resolve(request.params)
        if request.operation is Operation.STYLIZE:
            assert isinstance(request.media, PreparedVideo)
            style = params.get("style")
            edit = VideoEditRequest(
                video_name=request.media.base64(),
                prompt=str(params["prompt"]) if "prompt" in params else None,
                style=Style(str(style)) if style else None,
                request_id=idempotency_key,
            )
            result = await self.submit_video_edit(edit)
        else:
            assert isinstance(request.media, PreparedImage)
            body = Img2VideoRequest(
                image=request.media.base64(),
                prompt=str(params["prompt"]),
                negative_prompt=str(params["negative_prompt"]),
                resolution=_resolution(params.get("resolution"), request.media),
                request_id=idempotency_key,
                camera_move_horizontal=int(params["camera_horizontal"]),
                camera_move_vertical=int(params["camera_vertical"]),
                camera_move_depth=int(params["camera_depth"]),
                motion_strength=float(params["motion_strength"]),
            )
            result = await self.submit_img2video(body)
        return Submission(task_id=result.task_id)

    async def recover_submission(
        self, request: GenerationRequest, *, idempotency_key: str, since: datetime
    ) -> Submission | None:
        # Rule: HiDream has no idempotency key and no way to list tasks (request_id is only echoed back),
        # so an unknown outcome stays unknown. Sending the job again could pay twice; the tracker ends it.
        raise SubmitOutcomeUnknown(
            NAME, "HiDream cannot look a task up by the bot's job key, so it is unknown whether it was started"
        )

    async def poll(self, tasks: Sequence[TaskRef]) -> list[TaskStatus]:
        found: dict[tuple[Operation, str], TaskStatus] = {}
        for operation in (Operation.IMAGE_TO_VIDEO, Operation.STYLIZE):
            ids = list(dict.fromkeys(task.task_id for task in tasks if task.operation is operation))
            for start in range(0, len(ids), self.batch_size):
                chunk = ids[start : start + self.batch_size]
                for result in await self.query_batch(_OPERATION_MODULE[operation], chunk):
                    found[(operation, result.task_id)] = task_status(result)
        return [
            found.get((task.operation, task.task_id))
            or TaskStatus(task.task_id, TaskState.QUEUED, provider_status="not listed")
            for task in tasks
        ]

    async def check(self) -> AccountCheck:
        # A batch query for a task id that cannot exist costs nothing and needs a valid token.
        await self.query_batch(Module.IMG2VIDEO, ["00000000-0000-0000-0000-000000000000"])
        return AccountCheck(credits=None, detail="token accepted (HiDream reports no balance)")


def _unwrap(response: HttpResponse) -> Any:
    """The ``result`` of a successful envelope; the matching error otherwise."""
    if response.status != 200:
        raise error_for_status(NAME, response, response_message(response, "message"))
    envelope = validate_model(NAME, Envelope, decode_json(NAME, response))
    if envelope.code != 0:
        raise _business_error(envelope)
    return envelope.result


def task_status(result: TaskResult) -> TaskStatus:
    """One neutral status from a task's sub-tasks (one per output; a video job has one)."""
    subs = result.sub_task_results
    if not subs:
        # An unknown id and a task not yet listed look the same; the tracker's deadlines end either.
        return TaskStatus(result.task_id, TaskState.QUEUED, provider_status="no sub-tasks")
    codes = [sub.task_status for sub in subs]
    raw = ",".join(str(code) for code in codes)
    progress = round(sum(min(max(sub.task_completion, 0.0), 1.0) for sub in subs) / len(subs), 2)
    if SubTaskStatus.MODERATION_REJECTED in codes:
        return TaskStatus(
            result.task_id,
            TaskState.REJECTED,
            error_kind=ErrorKind.MODERATION,
            error_reason="HiDream's content review rejected this video.",
            provider_status=raw,
        )
    if SubTaskStatus.FAILED in codes:
        return TaskStatus(
            result.task_id,
            TaskState.FAILED,
            error_kind=ErrorKind.GENERATION_FAILED,
            error_reason="HiDream could not generate this video.",
            provider_status=raw,
        )
    if all(code == SubTaskStatus.DONE for code in codes):
        video = next((sub.video for sub in subs if sub.video), "")
        if not video:
            return TaskStatus(
                result.task_id,
                TaskState.FAILED,
                error_kind=ErrorKind.GENERATION_FAILED,
                error_reason="HiDream finished without a video.",
                provider_status=raw,
            )
        return TaskStatus(result.task_id, TaskState.SUCCEEDED, progress=1.0, video_url=video, provider_status=raw)
    if all(code == SubTaskStatus.WAITING for code in codes):
        return TaskStatus(result.task_id, TaskState.QUEUED, progress=0.0, provider_status=raw)
    # Processing, a mix, or the undocumented negative values the official client treats as transient.
    return TaskStatus(result.task_id, TaskState.RUNNING, progress=progress, provider_status=raw)


def _business_error(envelope: Envelope) -> ProviderError:
    message = envelope.message or f"code {envelope.code}"
    lowered = message.lower()
    code = str(envelope.code)
    if any(word in lowered for word in _MODERATION_WORDS):
        return ModerationRejected(NAME, f"content review refused the request: {message}", code=code)
    if any(word in lowered for word in _LIMIT_WORDS):
        return RateLimited(NAME, f"too many tasks: {message}", code=code)
    if any(word in lowered for word in _CREDENTIAL_WORDS):
        return CredentialsRefused(NAME, f"the token was refused: {message}", code=code)
    return InvalidRequest(NAME, f"the request was refused: {message} (code {envelope.code})", code=code)


def _resolution(chosen: object, image: PreparedImage) -> Resolution:
    """The chosen resolution, or the one whose shape is closest to the image's."""
    if chosen in RESOLUTIONS:
        return chosen
    ratio = image.width / image.height
    if ratio >= 1.3:
        return "1280*720"
    if ratio <= 1 / 1.3:
        return "720*1280"
    return "960*960"

"""The PixVerse client: image upload, image-to-video generation, result query, balance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
from pydantic import SecretStr

from providers.answers import UnknownStates
from providers.base import AccountCheck, GenerationRequest, Submission, TaskRef, TaskState, TaskStatus, VideoProvider
from providers.callbacks import Callback, CallbackNews, CallbackRefused
from providers.errors import (
    CredentialsRefused,
    ErrorKind,
    InsufficientCredits,
    InvalidRequest,
    ModerationRejected,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)
from providers.http import (
    EndpointKind,
    HttpResponse,
    ProviderHTTP,
    RequestObserver,
    RetryPolicy,
    decode_json,
    error_for_status,
    response_message,
    validate_model,
)
from providers.media import PreparedImage
from providers.options import Operation
from providers.pixverse.capabilities import CAPABILITIES
from providers.pixverse.models import (
    Balance,
    Envelope,
    ErrCode,
    GenerateRequest,
    GenerateResponse,
    UploadImageResponse,
    VideoResult,
    VideoStatus,
)
from providers.pixverse.webhook import read_webhook

NAME = "PixVerse"
DEFAULT_BASE_URL = "https://app-api.pixverse.ai"
#: Result queries one poll keeps in flight at once.
MAX_PARALLEL_QUERIES = 8

_TRACE_NAMESPACE = uuid.UUID("6f3a4d1e-8c2b-4a57-9e0d-2b1c5f7a9e31")
_CREDENTIAL_CODES = {ErrCode.INVALID_ACCOUNT, ErrCode.NO_PERMISSION, 10001, 10002, 10003, 10004, 10005}
_MODERATION_CODES = {ErrCode.IMAGE_MODERATION, ErrCode.INPUT_MODERATION}
_UNAVAILABLE_CODES = {ErrCode.UPLOAD_FAILED, ErrCode.HIGH_LOAD, ErrCode.INTERNAL_DB_ERROR}


def trace_id_for(idempotency_key: str) -> str:
    """The Ai-trace-id of the generate sent under one idempotency key; the same key gives the same id.

    PixVerse answers a repeated trace id with the earlier answer instead of a new generation, so a
    generate replayed under its key can never pay twice. The caller passes a new key for every definite
    attempt (a refusal may be replayed too) and the same key only to replay a send whose outcome is unknown.
    """
    return str(uuid.uuid5(_TRACE_NAMESPACE, idempotency_key))


class PixVerse(VideoProvider):
    """PixVerse Platform API: ``API-KEY`` plus a fresh ``Ai-trace-id`` on every request."""

    name = "pixverse"
    display_name = NAME
    capabilities: ClassVar = CAPABILITIES

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
        webhook_secret: SecretStr | None = None,
    ) -> None:
        self._key = api_key
        #: The secret of the account's webhook in PixVerse's console; None: PixVerse is polled as usual.
        self._webhook_secret = webhook_secret
        self._http = ProviderHTTP(
            session,
            provider=NAME,
            base_url=base_url,
            secrets=[api_key.get_secret_value()],
            timeout=timeout,
            retry=retry,
            observer=observer,
        )
        self._unknown_states = UnknownStates(NAME)

    def _headers(self, trace_id: str | None = None) -> dict[str, str]:
        return {"API-KEY": self._key.get_secret_value(), "Ai-trace-id": trace_id or str(uuid.uuid4())}

    @property
    def calls_back(self) -> bool:
        return self._webhook_secret is not None

    def read_callback(self, callback: Callback) -> CallbackNews:
        if self._webhook_secret is None:
            raise CallbackRefused(404, "PixVerse webhooks are not taken (PIXVERSE_WEBHOOK_SECRET is not set)")
        return read_webhook(callback, secret=self._webhook_secret.get_secret_value())

    # The documented endpoints.

    async def upload_image(self, image: PreparedImage) -> UploadImageResponse:
        """Upload an image file (multipart field ``image``) and get its ``img_id``."""

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("image", image.data, filename=f"image.{image.extension}", content_type=image.mime_type)
            return data

        # An upload creates nothing billable, so it is retried like a read.
        return await self._http.request(
            "POST",
            "/openapi/v2/image/upload",
            kind=EndpointKind.UPLOAD,
            headers_factory=self._headers,
            form=form,
            parse=lambda response: validate_model(NAME, UploadImageResponse, _unwrap(response)),
            idempotent=True,
        )

    async def generate(self, body: GenerateRequest, *, trace_id: str) -> GenerateResponse:
        """Start an image-to-video generation (seed 002) under the job's own trace id."""
        return await self._http.request(
            "POST",
            "/openapi/v2/video/img/generate",
            kind=EndpointKind.CREATE,
            headers=self._headers(trace_id),
            json_body=body.model_dump(exclude_none=True),
            parse=lambda response: validate_model(NAME, GenerateResponse, _unwrap(response)),
            idempotent=False,
        )

    async def result(self, video_id: int) -> VideoResult:
        """The state of one video; every query carries a new trace id or PixVerse repeats a stale answer."""
        return await self._http.request(
            "GET",
            f"/openapi/v2/video/result/{video_id}",
            kind=EndpointKind.POLL,
            headers_factory=self._headers,
            parse=lambda response: validate_model(NAME, VideoResult, _unwrap(response)),
            idempotent=True,
        )

    async def balance(self) -> Balance:
        """The account's remaining credits."""
        return await self._http.request(
            "GET",
            "/openapi/v2/account/balance",
            kind=EndpointKind.CHECK,
            headers_factory=self._headers,
            parse=lambda response: validate_model(NAME, Balance, _unwrap(response)),
            idempotent=True,
        )

    # The provider-neutral interface.

    async def submit(self, request: GenerationRequest, *, idempotency_key: str) -> Submission:
        body = await self._upload_for(request)
        return await self._generate_under(body, idempotency_key)

    async def _upload_for(self, request: GenerationRequest) -> GenerateRequest:
        self._require_valid(request)
        assert isinstance(request.media, PreparedImage)
        params = self.capabilities[Operation.IMAGE_TO_VIDEO].resolve(request.params)
        uploaded = await self.upload_image(request.media)
        return build_generate_request(params, uploaded.img_id)

    async def _generate_under(self, body: GenerateRequest, idempotency_key: str) -> Submission:
        created = await self.generate(body, trace_id=trace_id_for(idempotency_key))
        credits = created.credits if created.credits is not None else created.credit
        return Submission(task_id=str(created.video_id), credits=credits)

    async def recover_submission(
        self, request: GenerationRequest, *, idempotency_key: str, since: datetime
    ) -> Submission | None:
        # Rule: PixVerse answers a generate that repeats an Ai-trace-id with the task that trace id already
        # created. Sending the job again under the same key (so the same trace id) returns the first task
        # if there was one, and otherwise creates the only one, so it is safe. A refusal in PixVerse's own
        # envelope (an ErrCode) proves that trace id created nothing: either the first answer was that
        # refusal, replayed, or the first send never took effect. The job may then be sent again, under
        # the new key of its next attempt.
        body = await self._upload_for(request)
        try:
            return await self._generate_under(body, idempotency_key)
        except SubmitOutcomeUnknown:
            raise
        except ProviderError as exc:
            if exc.code is None or isinstance(exc, CredentialsRefused):
                raise
            return None

    async def poll(self, tasks: Sequence[TaskRef]) -> list[TaskStatus]:
        limit = asyncio.Semaphore(MAX_PARALLEL_QUERIES)

        async def one(task: TaskRef) -> TaskStatus:
            async with limit:
                return task_status(await self.result(_video_id(task.task_id)), self._unknown_states)

        return list(await asyncio.gather(*(one(task) for task in tasks)))

    async def check(self) -> AccountCheck:
        balance = await self.balance()
        credits = balance.credit_monthly + balance.credit_package
        return AccountCheck(
            credits=credits,
            detail=f"{balance.credit_monthly} monthly and {balance.credit_package} package credits",
        )


def build_generate_request(params: dict[str, Any], img_id: int) -> GenerateRequest:
    """The documented generate body for validated, default-filled options."""
    sound_effect = params.get("sound_effect")
    lip_sync_text = params.get("lip_sync_text")
    return GenerateRequest(
        duration=params["duration"],
        img_id=img_id,
        model=params["model"],
        prompt=params["prompt"],
        negative_prompt=params.get("negative_prompt"),
        quality=params["quality"],
        style=params.get("style"),
        motion_mode=params.get("motion_mode"),
        camera_movement=params.get("camera_movement"),
        seed=params.get("seed"),
        generate_audio_switch=params.get("audio"),
        generate_multi_clip_switch=params.get("multi_clip"),
        thinking_type=params.get("thinking"),
        sound_effect_switch=True if sound_effect else None,
        # "auto" lets PixVerse choose the sound from the video.
        sound_effect_content=sound_effect if sound_effect and sound_effect.lower() != "auto" else None,
        lip_sync_tts_switch=True if lip_sync_text else None,
        lip_sync_tts_content=lip_sync_text,
        lip_sync_tts_speaker_id=params.get("lip_sync_voice"),
    )


def task_status(result: VideoResult, unknown: Callable[[str], None] | None = None) -> TaskStatus:
    """A neutral status from a video result; unknown status values (told to ``unknown``) mean the video is
    still coming."""
    task_id = str(result.id)
    raw = "" if result.status is None else str(result.status)
    if result.status == VideoStatus.SUCCEEDED:
        if not result.url:
            return TaskStatus(
                task_id,
                TaskState.FAILED,
                credits=result.credits,
                error_kind=ErrorKind.GENERATION_FAILED,
                error_reason="PixVerse finished without a video.",
                provider_status=raw,
            )
        return TaskStatus(
            task_id,
            TaskState.SUCCEEDED,
            progress=1.0,
            video_url=result.url,
            credits=result.credits,
            provider_status=raw,
        )
    if result.status == VideoStatus.MODERATION_FAILED:
        return TaskStatus(
            task_id,
            TaskState.REJECTED,
            credits=0,
            error_kind=ErrorKind.MODERATION,
            error_reason="PixVerse's content review rejected this video; its credits are refunded.",
            provider_status=raw,
        )
    if result.status in (VideoStatus.FAILED, VideoStatus.DELETED):
        reason = (
            "PixVerse could not generate this video."
            if result.status == VideoStatus.FAILED
            else ("PixVerse deleted this video.")
        )
        return TaskStatus(
            task_id,
            TaskState.FAILED,
            credits=result.credits,
            error_kind=ErrorKind.GENERATION_FAILED,
            error_reason=reason,
            provider_status=raw,
        )
    # 5 (waiting or generating) and anything undocumented: PixVerse does not tell queued from running.
    if result.status != VideoStatus.GENERATING and unknown is not None:
        unknown(raw)
    return TaskStatus(task_id, TaskState.RUNNING, provider_status=raw)


def _unwrap(response: HttpResponse) -> Any:
    """The ``Resp`` of a successful envelope; the matching error otherwise."""
    if response.status != 200:
        try:
            envelope = Envelope.model_validate(response.json())
        except ValueError:
            envelope = None
        if envelope is not None and envelope.ErrCode and response.status not in (401, 403, 429):
            raise _error_for_code(envelope)
        raise error_for_status(NAME, response, response_message(response, "ErrMsg"))
    envelope = validate_model(NAME, Envelope, decode_json(NAME, response))
    if envelope.ErrCode != ErrCode.OK:
        raise _error_for_code(envelope)
    return envelope.Resp


def _error_for_code(envelope: Envelope) -> ProviderError:
    code = envelope.ErrCode
    message = envelope.ErrMsg or "no detail"
    text = f"{message} (ErrCode {code})"
    if code in _CREDENTIAL_CODES:
        return CredentialsRefused(NAME, f"the API key was refused: {text}", code=str(code))
    if code == ErrCode.CONCURRENCY_LIMIT:
        return RateLimited(NAME, f"too many videos generating at once: {text}", code=str(code), concurrency=True)
    if code in _MODERATION_CODES:
        return ModerationRejected(NAME, f"content review refused the input: {text}", code=str(code))
    if code == ErrCode.INSUFFICIENT_BALANCE:
        return InsufficientCredits(NAME, f"the account is out of credits: {text}", code=str(code))
    if code in _UNAVAILABLE_CODES:
        return ProviderUnavailable(NAME, f"PixVerse could not serve the request: {text}", code=str(code))
    return InvalidRequest(NAME, f"the request was refused: {text}", code=str(code))


def _video_id(task_id: str) -> int:
    try:
        return int(task_id)
    except ValueError:
        raise InvalidRequest(NAME, f"{task_id!r} is not a PixVerse video id") from None

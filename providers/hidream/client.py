"""The HiDream client: image to video, video stylization, batch and single result queries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
from pydantic import SecretStr

from providers.answers import UnknownStates
from providers.base import (
    AccountCheck,
    GenerationRequest,
    Submission,
    TaskRef,
    TaskState,
    TaskStatus,
    VideoProvider,
)
from providers.callbacks import Callback, CallbackNews, CallbackRefused
from providers.errors import (
    CredentialsRefused,
    ErrorKind,
    InvalidRequest,
    ModerationRejected,
    ProviderError,
    RateLimited,
    SubmitOutcomeUnknown,
)
from providers.hidream import callback as hidream_callback
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
from providers.media import PreparedImage, PreparedVideo
from providers.options import Operation

NAME = "HiDream"
DEFAULT_BASE_URL = "https://www.hidreamai.com"
#: Undocumented maximum; a batch of this many stays a small request.
BATCH_SIZE = 50
#: Single-task result queries one poll keeps in flight at once.
MAX_PARALLEL_QUERIES = 8

# HiDream publishes no error-code table, so a refusal's kind is read from its message.
_MODERATION_WORDS = ("审核", "moderation", "review", "sensitive", "illegal", "violat", "nsfw")
_CREDENTIAL_WORDS = ("token", "unauthor", "auth", "api key", "apikey", "登录", "鉴权")
_LIMIT_WORDS = ("too many", "rate limit", "frequen", "concurren", "频繁", "并发", "限流")

_DOCUMENTED_STATUSES = frozenset(SubTaskStatus)
#: Undocumented, but HiDream's own client treats them as "still working" (notes §1 fact 6).
_TRANSIENT_STATUSES = frozenset(range(-5, 0))

_OPERATION_MODULE = {Operation.IMAGE_TO_VIDEO: Module.IMG2VIDEO, Operation.STYLIZE: Module.VIDEO_EDIT}
#: The API version each module's submit uses (seeds 000 and 001); its results endpoint has the same one.
_SUBMIT_VERSION = {Module.IMG2VIDEO: "v3", Module.VIDEO_EDIT: "v2", Module.TXT2VIDEO: "v3"}


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
        observer: RequestObserver | None = None,
        callback_url: str | None = None,
    ) -> None:
        #: Given to HiDream with every submit, so it calls back when the task ends.
        self.callback_url = callback_url
        self._key = api_key
        self._http = ProviderHTTP(
            session,
            provider=NAME,
            base_url=base_url,
            secrets=[api_key.get_secret_value()],
            timeout=timeout,
            retry=retry,
            observer=observer,
        )
        self.batch_size = batch_size
        self._unknown_states = UnknownStates(NAME)
        #: Operations whose tasks the batch query did not know but their own version's results endpoint did.
        #: A cache of a guess: losing it costs one extra request per task, never a stuck job.
        self._single_first: set[Operation] = set()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.get_secret_value()}", "Content-Type": "application/json"}

    @property
    def calls_back(self) -> bool:
        return self.callback_url is not None

    def read_callback(self, callback: Callback) -> CallbackNews:
        if self.callback_url is None:
            raise CallbackRefused(404, "HiDream callbacks are not taken (PUBLIC_URL is not set)")
        return hidream_callback.read_callback(callback)

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
            kind=EndpointKind.POLL,
            headers=self._headers(),
            json_body=body.model_dump(exclude_none=True),
            parse=lambda response: validate_model(NAME, BatchResult, _unwrap(response)).root,
            idempotent=True,
        )

    async def query(self, module: Module, task_id: str) -> TaskResult:
        """Result of one task from the results endpoint of the version its submit used (notes §1 fact 1)."""
        version = _SUBMIT_VERSION[module]
        return await self._http.request(
            "GET",
            f"/api-pub/gw/{version}/video/{module.value}/async/results",
            kind=EndpointKind.POLL,
            headers=self._headers(),
            params=[("task_id", task_id)],
            parse=lambda response: validate_model(NAME, TaskResult, _unwrap(response)),
            idempotent=True,
        )

    async def _post_submit(self, path: str, body: Img2VideoRequest | VideoEditRequest) -> SubmitResult:
        return await self._http.request(
            "POST",
            path,
            kind=EndpointKind.CREATE,
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
                notify_url=self.callback_url,
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
                notify_url=self.callback_url,
            )
            result = await self.submit_img2video(body)
        # No cost here or in the results: seeds 000, 001 and 003 and the official pages give the submit answer
        # only task_id and sub_task_ids, and a sub-task result only its status, completion and video URLs; no
        # balance endpoint is documented either. HiDream jobs therefore carry no credits.
        return Submission(task_id=result.task_id)

    async def recover_submission(
        self, request: GenerationRequest, *, idempotency_key: str, since: datetime
    ) -> Submission | None:
        # Rule: HiDream has no idempotency key and no way to list tasks (request_id is only echoed back),
        # so an unknown outcome stays unknown. Sending the job again could pay twice; the scheduler ends it.
        raise SubmitOutcomeUnknown(
            NAME, "HiDream cannot look a task up by the bot's job key, so it is unknown whether it was started"
        )

    async def poll(self, tasks: Sequence[TaskRef]) -> list[TaskStatus]:
        found: dict[tuple[Operation, str], TaskResult] = {}
        for operation in (Operation.IMAGE_TO_VIDEO, Operation.STYLIZE):
            ids = list(dict.fromkeys(task.task_id for task in tasks if task.operation is operation))
            if ids:
                for task_id, known in (await self._results(operation, ids)).items():
                    found[(operation, task_id)] = known
        statuses: list[TaskStatus] = []
        for task in tasks:
            result = found.get((task.operation, task.task_id))
            if result is None:
                # An unknown id and a task not yet listed look the same; the scheduler's deadlines end either.
                statuses.append(TaskStatus(task.task_id, TaskState.QUEUED, provider_status="no sub-tasks"))
            else:
                statuses.append(task_status(result, self._unknown_states))
        return statuses

    async def _results(self, operation: Operation, ids: list[str]) -> dict[str, TaskResult]:
        """The tasks that some results endpoint knows, asking the one that knew such tasks last time first.

        Seed 003 documents the v2 batch for img2video, but HiDream's own client polls the results endpoint
        of the submit's version (v3 for img2video); whether v2 lists v3 tasks is unknown. A task the first
        endpoint answers with no sub-tasks is asked of the other, and the one that knew it goes first next time.
        """
        module = _OPERATION_MODULE[operation]
        single_first = operation in self._single_first
        first, second = (self._singles, self._batches) if single_first else (self._batches, self._singles)
        known = await first(module, ids)
        missing = [task_id for task_id in ids if task_id not in known]
        if missing:
            also_known = await second(module, missing)
            if also_known:
                if single_first:
                    self._single_first.discard(operation)
                else:
                    self._single_first.add(operation)
                known.update(also_known)
        return known

    async def _batches(self, module: Module, ids: list[str]) -> dict[str, TaskResult]:
        known: dict[str, TaskResult] = {}
        for start in range(0, len(ids), self.batch_size):
            for result in await self.query_batch(module, ids[start : start + self.batch_size]):
                if result.sub_task_results:
                    known[result.task_id] = result
        return known

    async def _singles(self, module: Module, ids: list[str]) -> dict[str, TaskResult]:
        limit = asyncio.Semaphore(MAX_PARALLEL_QUERIES)

        async def one(task_id: str) -> TaskResult:
            async with limit:
                return await self.query(module, task_id)

        results = await asyncio.gather(*(one(task_id) for task_id in ids))
        return {task_id: result for task_id, result in zip(ids, results, strict=True) if result.sub_task_results}

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


def task_status(result: TaskResult, unknown: Callable[[str], None] | None = None) -> TaskStatus:
    """One neutral status from a task's sub-tasks (one per output; a video job has one); undocumented
    status values are told to ``unknown``."""
    subs = result.sub_task_results
    if not subs:
        # An unknown id and a task not yet listed look the same; the scheduler's deadlines end either.
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
    if unknown is not None:
        for code in codes:
            if code not in _DOCUMENTED_STATUSES and code not in _TRANSIENT_STATUSES:
                unknown(str(code))
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

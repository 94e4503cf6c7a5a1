"""The Vidu client: img2video create, task query, cancel, task list and credits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from providers.answers import UnknownStates
from providers.base import AccountCheck, GenerationRequest, Submission, TaskRef, TaskState, TaskStatus, VideoProvider
from providers.callbacks import Callback, CallbackNews, CallbackRefused
from providers.errors import (
    CancelNotPossible,
    ErrorKind,
    GenerationFailed,
    InsufficientCredits,
    ModerationRejected,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from providers.http import (
    EndpointKind,
    HttpResponse,
    ProviderHTTP,
    RequestObserver,
    RetryPolicy,
    decode_json,
    error_for_status,
    parse_retry_after,
    validate_model,
)
from providers.media import PreparedImage
from providers.options import Operation, Params
from providers.vidu import callback as signed_callback
from providers.vidu.capabilities import CAPABILITIES, audio_on
from providers.vidu.models import (
    CreateResponse,
    Credits,
    ErrorBody,
    Img2VideoRequest,
    Reason,
    State,
    TaskCreations,
    TaskList,
)

NAME = "Vidu"
DEFAULT_BASE_URL = "https://api.vidu.com"
AuthScheme = Literal["Token", "Bearer"]
MAX_PARALLEL_QUERIES = 8
#: The most tasks the task list returns per page.
LIST_PAGE_SIZE = 100
#: Marks the payload of tasks this bot created, so reconciliation never mistakes another client's task.
PAYLOAD_PREFIX = "animate-bot:"
RECOVERY_MARGIN = timedelta(minutes=10)

_MODERATION_REASONS = {
    Reason.TASK_PROMPT_POLICY_VIOLATION,
    Reason.AUDIT_SUBMIT_ILLEGAL,
    Reason.CREATION_POLICY_VIOLATION,
}
_THROTTLE_REASONS = {Reason.TOO_MANY_REQUESTS, Reason.SYSTEM_THROTTLING}
_BUSY_REASONS = {Reason.OPERATION_IN_PROCESS, Reason.MODEL_UNAVAILABLE}


def payload_for(idempotency_key: str) -> str:
    """The payload a job's task carries; Vidu echoes it, so a lost task id can be found again."""
    return PAYLOAD_PREFIX + idempotency_key


class Vidu(VideoProvider):
    """Vidu enterprise API (ent/v2)."""

    name = "vidu"
    display_name = NAME
    capabilities: ClassVar = CAPABILITIES
    can_cancel = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        auth_scheme: AuthScheme = "Token",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
        callback_url: str | None = None,
    ) -> None:
        self._key = api_key
        self._scheme = auth_scheme
        #: Given to Vidu with every create, so it calls back on each change of the task.
        self.callback_url = callback_url
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

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"{self._scheme} {self._key.get_secret_value()}", "Content-Type": "application/json"}

    @property
    def calls_back(self) -> bool:
        return self.callback_url is not None

    def read_callback(self, callback: Callback) -> CallbackNews:
        if self.callback_url is None:
            raise CallbackRefused(404, "Vidu callbacks are not taken (PUBLIC_URL is not set)")
        return signed_callback.read_callback(
            callback,
            secret=self._key.get_secret_value(),
            path=urlsplit(self.callback_url).path,
            payload_prefix=PAYLOAD_PREFIX,
        )

    # The documented endpoints.

    async def create(self, body: Img2VideoRequest) -> CreateResponse:
        """Create an image-to-video task (seed 004)."""
        return await self._http.request(
            "POST",
            "/ent/v2/img2video",
            kind=EndpointKind.CREATE,
            headers=self._headers(),
            json_body=body.model_dump(exclude_none=True),
            parse=lambda response: validate_model(NAME, CreateResponse, _parse(response)),
            idempotent=False,
        )

    async def creations(self, task_id: str) -> TaskCreations:
        """A task's state and, once done, its videos."""
        return await self._http.request(
            "GET",
            f"/ent/v2/tasks/{task_id}/creations",
            kind=EndpointKind.POLL,
            headers=self._headers(),
            parse=lambda response: validate_model(NAME, TaskCreations, _parse(response)),
            idempotent=True,
        )

    async def cancel_task(self, task_id: str) -> None:
        """Cancel a task that has not started (queued or off-peak)."""
        await self._http.request(
            "POST",
            f"/ent/v2/tasks/{task_id}/cancel",
            kind=EndpointKind.CANCEL,
            headers=self._headers(),
            json_body={"id": task_id},
            parse=_parse,
            idempotent=True,
        )

    async def list_tasks(
        self,
        *,
        task_ids: Sequence[str] = (),
        states: Sequence[State] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        page_size: int = LIST_PAGE_SIZE,
        page_token: str = "",
    ) -> TaskList:
        """One page of the organisation's tasks, newest first (7 days unless told otherwise)."""
        params: list[tuple[str, str]] = [("pager.pagesz", str(page_size))]
        params += [("task_ids", task_id) for task_id in task_ids]
        params += [("states", state.value) for state in states]
        if created_from is not None:
            params.append(("created_at.from", created_from.isoformat()))
        if created_to is not None:
            params.append(("created_at.to", created_to.isoformat()))
        if page_token:
            params.append(("pager.page_token", page_token))
        return await self._http.request(
            "GET",
            "/ent/v2/tasks",
            kind=EndpointKind.LIST,
            headers=self._headers(),
            params=params,
            parse=lambda response: validate_model(NAME, TaskList, _parse(response)),
            idempotent=True,
        )

    async def credits(self, *, show_detail: bool = False) -> Credits:
        """The organisation's remaining credits and concurrency."""
        return await self._http.request(
            "GET",
            "/ent/v2/credits",
            kind=EndpointKind.CHECK,
            headers=self._headers(),
            params=[("show_detail", "true" if show_detail else "false")],
            parse=lambda response: validate_model(NAME, Credits, _parse(response)),
            idempotent=True,
        )

    async def find_task(self, idempotency_key: str, *, created_from: datetime) -> TaskCreations | None:
        """The task a job created, found by its payload in the task list; None when there is none."""
        wanted = payload_for(idempotency_key)
        token = ""
        while True:
            page = await self.list_tasks(created_from=created_from, page_token=token)
            for task in page.tasks:
                if task.payload == wanted:
                    return task
            if not page.next_page_token or not page.tasks:
                return None
            token = page.next_page_token

    # The provider-neutral interface.

    async def submit(self, request: GenerationRequest, *, idempotency_key: str) -> Submission:
        self._require_valid(request)
        assert isinstance(request.media, PreparedImage)
        params = self.capabilities[Operation.IMAGE_TO_VIDEO].resolve(request.params)
        created = await self.create(
            build_create_request(params, request.media, payload_for(idempotency_key), callback_url=self.callback_url)
        )
        if created.state == State.FAILED:
            # Vidu can refuse a task in the create answer itself.
            raise _failure_error(created.err_code)
        return Submission(task_id=created.task_id, credits=created.credits)

    async def recover_submission(
        self, request: GenerationRequest, *, idempotency_key: str, since: datetime
    ) -> Submission | None:
        # Rule: every task carries the job key in its payload, and the task list echoes payloads. A task
        # found there is the job's; none found means the create never took effect, so the job may be sent
        # again. The window starts a little before the first send to allow for clock skew.
        task = await self.find_task(idempotency_key, created_from=since - RECOVERY_MARGIN)
        return Submission(task_id=task.id, credits=task.credits) if task else None

    async def poll(self, tasks: Sequence[TaskRef]) -> list[TaskStatus]:
        limit = asyncio.Semaphore(MAX_PARALLEL_QUERIES)

        async def one(task: TaskRef) -> TaskStatus:
            async with limit:
                return task_status(await self.creations(task.task_id), self._unknown_states)

        return list(await asyncio.gather(*(one(task) for task in tasks)))

    async def cancel(self, task: TaskRef) -> None:
        try:
            await self.cancel_task(task.task_id)
        except ProviderError as exc:
            if exc.code == Reason.BAD_REQUEST:
                raise CancelNotPossible(NAME, f"Vidu can no longer cancel this task: {exc.message}") from None
            raise

    async def check(self) -> AccountCheck:
        credits = await self.credits()
        remaining = sum(item.credit_remain for item in credits.remains)
        limits = [item.concurrency_limit for item in credits.remains if item.concurrency_limit]
        detail = f"{remaining} credits left"
        if limits:
            detail += f", up to {max(limits)} tasks at once"
        return AccountCheck(credits=remaining, detail=detail)


def build_create_request(
    params: Params, image: PreparedImage, payload: str, *, callback_url: str | None = None
) -> Img2VideoRequest:
    """The documented create body for validated, default-filled options."""
    model = str(params["model"])
    sound = audio_on(params)
    return Img2VideoRequest.model_validate(
        {
            "model": model,
            "images": [image.data_uri()],
            "prompt": params["prompt"],
            # q3 models make sound unless told not to, and sound cannot go with off-peak.
            "audio": sound if "audio" in params or params.get("off_peak") else None,
            "voice_id": params.get("voice_id") if sound else None,
            "is_rec": params.get("recommend_prompt"),
            "duration": params.get("duration"),
            "seed": params.get("seed"),
            "resolution": params.get("resolution"),
            "movement_amplitude": params.get("movement_amplitude"),
            "payload": payload,
            "off_peak": params.get("off_peak"),
            "callback_url": callback_url,
        }
    )


def task_status(task: TaskCreations, unknown: Callable[[str], None] | None = None) -> TaskStatus:
    """A neutral status from a task's creations answer; undocumented states are told to ``unknown``."""
    state = task.state
    if state in (State.CREATED, State.QUEUEING):
        return TaskStatus(task.id, TaskState.QUEUED, credits=task.credits, provider_status=state)
    if state == State.SUCCESS:
        creation = next((item for item in task.creations if item.url), None)
        if creation is None:
            return TaskStatus(
                task.id,
                TaskState.FAILED,
                credits=task.credits,
                error_kind=ErrorKind.GENERATION_FAILED,
                error_reason="Vidu finished without a video.",
                provider_status=state,
            )
        return TaskStatus(
            task.id,
            TaskState.SUCCEEDED,
            progress=1.0,
            video_url=creation.url,
            cover_url=creation.cover_url or None,
            credits=task.credits,
            provider_status=state,
        )
    if state == State.FAILED:
        error = _failure_error(task.err_code)
        return TaskStatus(
            task.id,
            TaskState.REJECTED if isinstance(error, ModerationRejected) else TaskState.FAILED,
            credits=task.credits,
            error_kind=ErrorKind.CANCELLED if task.err_code == Reason.USER_CANCELLED else error.kind,
            error_reason=error.message,
            provider_status=f"{state}:{task.err_code}" if task.err_code else state,
        )
    # processing, or a state the documents do not list: keep polling.
    if state != State.PROCESSING and unknown is not None:
        unknown(state)
    progress = None if task.progress is None else round(min(max(task.progress, 0.0), 100.0) / 100, 2)
    return TaskStatus(task.id, TaskState.RUNNING, progress=progress, credits=task.credits, provider_status=state)


def _failure_error(err_code: str) -> ProviderError:
    if err_code in _MODERATION_REASONS:
        return ModerationRejected(NAME, "Vidu's content review rejected this video.", code=err_code)
    if err_code == Reason.USER_CANCELLED:
        return GenerationFailed(NAME, "The task was cancelled before it started.", code=err_code)
    if err_code == Reason.CREDIT_INSUFFICIENT:
        return InsufficientCredits(NAME, "The Vidu account ran out of credits.", code=err_code)
    detail = f" ({err_code})" if err_code else ""
    return GenerationFailed(NAME, f"Vidu could not generate this video{detail}.", code=err_code or None)


def _parse(response: HttpResponse) -> Any:
    if 200 <= response.status < 300:
        return decode_json(NAME, response) if response.body.strip() else {}
    try:
        body = ErrorBody.model_validate(response.json())
    except ValueError:
        body = ErrorBody()
    reason = body.reason
    message = f"{body.message or 'no detail'} ({reason or response.status})"
    code = reason or None
    if reason in _MODERATION_REASONS:
        raise ModerationRejected(NAME, f"content review refused the request: {message}", code=code)
    if reason == Reason.CREDIT_INSUFFICIENT:
        raise InsufficientCredits(NAME, f"the account is out of credits: {message}", code=code)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if reason == Reason.QUOTA_EXCEEDED:
        raise RateLimited(
            NAME, f"too many tasks at once: {message}", code=code, retry_after=retry_after, concurrency=True
        )
    if reason in _THROTTLE_REASONS:
        raise RateLimited(NAME, f"too many requests: {message}", code=code, retry_after=retry_after)
    if reason in _BUSY_REASONS:
        raise ProviderUnavailable(NAME, f"Vidu is busy: {message}", code=code)
    raise error_for_status(NAME, response, message, code=code)

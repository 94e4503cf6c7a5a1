"""Fake Vidu enterprise API: img2video create, creations, cancel, task list, credits."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import hmac
import itertools
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from aiohttp import web

from simulators.fake_providers.common import (
    MIB,
    Call,
    CallbackDue,
    Clock,
    FakeProvider,
    Fault,
    Outcome,
    Refusal,
    Task,
    decode_base64,
    dump_json,
    is_http_url,
    is_int,
    json_response,
    output_size,
    probe_image,
    retry_after_header,
    rfc3339,
)

FIELDS: Final = frozenset(
    {
        "model",
        "images",
        "prompt",
        "audio",
        "voice_id",
        "is_rec",
        "duration",
        "seed",
        "resolution",
        "movement_amplitude",
        "payload",
        "off_peak",
        "watermark",
        "wm_position",
        "wm_url",
        "meta_data",
        "callback_url",
    }
)
REQUIRED: Final = ("model", "prompt", "images")
# Seed 004, plus the models of Vidu's older image-to-video page (ZeoXel/SUNSTUDIO docs/vidu.md).
DURATIONS: Final = {
    "viduq3-pro": (1, 16),
    "viduq3-turbo": (1, 16),
    "viduq2": (1, 10),
    "viduq2-pro": (1, 10),
    "viduq2-turbo": (1, 10),
    "viduq2-pro-fast": (1, 10),
    "viduq1": (5, 5),
    "viduq1-classic": (5, 5),
}
RESOLUTIONS: Final = {
    "viduq3-pro": ("540p", "720p", "1080p"),
    "viduq3-turbo": ("540p", "720p", "1080p"),
    "viduq2": ("540p", "720p", "1080p"),
    "viduq2-pro": ("540p", "720p", "1080p"),
    "viduq2-turbo": ("540p", "720p", "1080p"),
    "viduq2-pro-fast": ("720p", "1080p"),
    "viduq1": ("1080p",),
    "viduq1-classic": ("1080p",),
}
DEFAULT_RESOLUTION: Final = {model: "1080p" if model.startswith("viduq1") else "720p" for model in DURATIONS}
AMPLITUDES: Final = frozenset({"auto", "small", "medium", "large"})
DATA_URI_HEADS: Final = frozenset(f"data:image/{kind};base64" for kind in ("png", "jpeg", "jpg", "webp"))
IMAGE_FORMATS: Final = frozenset({"PNG", "JPEG", "WEBP"})
CREDITS_PER_SECOND: Final = {"540p": 8, "720p": 12, "1080p": 16}
STATES: Final = frozenset({"created", "queueing", "processing", "success", "failed"})
ERR_CODES: Final = {
    "failed": "InternalServiceFailure",
    "moderation": "CreationPolicyViolation",
    "cancelled": "UserCancelled",
}
STRING_FIELDS: Final = ("voice_id", "wm_position", "wm_url", "meta_data", "callback_url")
FIELD_INVALID: Final = "FieldInvalid"
SIGNED_HEADERS: Final = ("Date", "x-request-nonce")


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise Refusal(FIELD_INVALID, f"{name} must be true or false")


def _check_image(image: Any) -> tuple[int, int] | None:
    """Validate ``images[0]``; return its size when it was sent inline."""
    if not isinstance(image, str):
        raise Refusal(FIELD_INVALID, "images must hold strings")
    if is_http_url(image):
        return None
    head, comma, data = image.partition(",")
    if not comma or head.lower() not in DATA_URI_HEADS:
        raise Refusal("ImageFormatInvalid", "images[0] must be an http(s) URL or a data:image/...;base64, URI")
    raw = decode_base64(data)
    info = probe_image(raw) if raw is not None else None
    if info is None or info.format not in IMAGE_FORMATS:
        raise Refusal("ImageFormatInvalid", "images[0] is not a png, jpeg or webp image")
    if raw is not None and len(raw) > 50 * MIB:
        raise Refusal("PageSizeOutOfRange", "images[0] exceeds 50 MB")
    if not 0.25 < info.width / info.height < 4:
        raise Refusal("PageSizeOutOfRange", "images[0] aspect ratio must be between 1:4 and 4:1")
    return info.width, info.height


def _check_create(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a create body and return it with defaults applied."""
    model = body["model"]
    if not isinstance(model, str) or model not in DURATIONS:
        raise Refusal(FIELD_INVALID, f"model must be one of {sorted(DURATIONS)}")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise Refusal(FIELD_INVALID, "prompt must be a string")
    if len(prompt) > 2000:
        raise Refusal(FIELD_INVALID, "prompt must be at most 2000 characters")
    images = body["images"]
    if not isinstance(images, list):
        raise Refusal(FIELD_INVALID, "images must be an array of strings")
    if len(images) != 1:
        raise Refusal("FieldItemCountOutOfRange", "images must hold exactly 1 image")
    size = _check_image(images[0])
    duration = body.get("duration", 5)
    if isinstance(duration, float) and duration.is_integer():
        duration = int(duration)
    low, high = DURATIONS[model]
    if not is_int(duration) or not low <= duration <= high:
        raise Refusal(FIELD_INVALID, f"duration for {model} must be an integer from {low} to {high}")
    resolution = body.get("resolution", DEFAULT_RESOLUTION[model])
    if resolution not in RESOLUTIONS[model]:
        raise Refusal(FIELD_INVALID, f"resolution for {model} must be one of {list(RESOLUTIONS[model])}")
    amplitude = body.get("movement_amplitude", "auto")
    if not isinstance(amplitude, str) or amplitude not in AMPLITUDES:
        raise Refusal(FIELD_INVALID, f"movement_amplitude must be one of {sorted(AMPLITUDES)}")
    seed = body.get("seed", 0)
    if isinstance(seed, str) and seed.isdigit():
        seed = int(seed)
    if not is_int(seed) or seed < 0:
        raise Refusal(FIELD_INVALID, "seed must be a non-negative integer")
    audio = _flag(body, "audio", model.startswith("viduq3"))
    off_peak = _flag(body, "off_peak", False)
    if audio and off_peak:
        raise Refusal(FIELD_INVALID, "audio is not supported in off_peak mode")
    payload = body.get("payload", "")
    if not isinstance(payload, str) or len(payload) > 1048576:
        raise Refusal(FIELD_INVALID, "payload must be a string of at most 1048576 characters")
    for name in STRING_FIELDS:
        if name in body and not isinstance(body[name], str):
            raise Refusal(FIELD_INVALID, f"{name} must be a string")
    return {
        "model": model,
        "prompt": prompt,
        "images": images,
        "image_size": size,
        "duration": duration,
        "resolution": resolution,
        "movement_amplitude": amplitude,
        "seed": seed or random.randint(1, 2**31 - 1),
        "audio": audio,
        "off_peak": off_peak,
        "watermark": _flag(body, "watermark", False),
        "is_rec": _flag(body, "is_rec", False),
        "payload": payload,
        "wm_position": body.get("wm_position") or "unspecified",
        "wm_url": body.get("wm_url", ""),
        "meta_data": body.get("meta_data", ""),
    }


def _parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Refusal(FIELD_INVALID, f"{value!r} is not an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _server_reason(status: int) -> str:
    if status != 500:
        with contextlib.suppress(ValueError):
            return HTTPStatus(status).phrase.replace(" ", "")
    return "InternalServiceFailure"


class FakeVidu(FakeProvider):
    """Vidu fake: ``Authorization: <scheme> <key>``, HTTP status errors ``{code, reason, message, metadata}``."""

    malformed_body: ClassVar[str] = '{"task_id": "9110456038011822'

    def __init__(
        self,
        *,
        api_key: str = "vidu-test-key",
        prefix: str = "",
        clock: Clock = time.monotonic,
        queue_seconds: float = 0.05,
        run_seconds: float = 0.3,
        video_bytes: bytes | None = None,
        record: bool = True,
        outcome_rule: Callable[[dict[str, Any]], Outcome | None] | None = None,
        tag_media: bool = False,
        auth_scheme: str = "Token",
        concurrency: int = 5,
        off_peak_seconds: float = 2.0,
        reject_over_concurrency: bool = False,
        credit_remain: int = 100_000,
    ) -> None:
        super().__init__(
            api_key=api_key,
            prefix=prefix,
            clock=clock,
            queue_seconds=queue_seconds,
            run_seconds=run_seconds,
            video_bytes=video_bytes,
            record=record,
            outcome_rule=outcome_rule,
            tag_media=tag_media,
        )
        self.auth_scheme = auth_scheme
        self.concurrency = concurrency
        self.off_peak_seconds = off_peak_seconds
        self.reject_over_concurrency = reject_over_concurrency
        self.credit_remain = credit_remain
        #: Seconds before each retry of a success or failed callback that did not get HTTP 200 (Vidu fact 5:
        #: retried three times; the spacing is not documented).
        self.callback_retry_delays: tuple[float, ...] = (1.0, 1.0, 1.0)
        self._task_ids = itertools.count(911045603801182208)
        self._sequence = itertools.count()
        # Unscheduled tasks ordered by the time they may start, and end times of the running ones.
        self._pending: list[tuple[float, int, Task]] = []
        self._running: list[float] = []
        self._queued = 0
        self._route("POST", "/ent/v2/img2video", "create", self._create)
        self._route("GET", "/ent/v2/tasks/{task_id}/creations", "creations", self._creations)
        self._route("POST", "/ent/v2/tasks/{task_id}/cancel", "cancel", self._cancel)
        self._route("GET", "/ent/v2/tasks", "tasks", self._tasks)
        self._route("GET", "/ent/v2/credits", "credits", self._credits)

    # -- errors ----------------------------------------------------------------------------

    def _error(self, status: int, reason: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
        payload = {"code": status, "reason": reason, "message": message, "metadata": {"trace_id": uuid.uuid4().hex}}
        return json_response(payload, status=status, headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"{self.auth_scheme} {self.api_key}"

    def _unauthorized(self, call: Call) -> web.Response:
        return self._error(401, "Unauthorized", "invalid token")

    async def _unknown(self, call: Call) -> web.StreamResponse:
        return self._error(404, "NotFound", "not found")

    def _render_fault(self, call: Call, fault: Fault) -> web.Response:
        kind = fault.kind
        if kind == "server_error":
            status = int(fault.get("status", 500))
            return self._error(status, _server_reason(status), "internal service failure")
        if kind == "business_error":
            status = int(fault.get("status", 400))
            return self._error(status, str(fault.get("reason", "BadRequest")), str(fault.get("message", "bad request")))
        if kind == "rate_limited":
            return self._error(429, "TooManyRequests", "too many requests", headers=retry_after_header(fault))
        if kind == "concurrency":
            return self._error(429, "QuotaExceeded", "concurrency quota exceeded")
        if kind == "moderation":
            return self._error(400, "AuditSubmitIllegal", str(fault.get("message", "input did not pass moderation")))
        if kind == "echo_key":
            return self._error(400, "BadRequest", f"invalid request for key {self.api_key}")
        raise ValueError(f"unhandled fault {kind!r}")

    # -- scheduling ------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Start every queued task whose slot has freed by ``now`` (first ready, first served)."""
        pending, running = self._pending, self._running
        while pending:
            ready_at, _, task = pending[0]
            if task.cancelled_at is not None:
                heapq.heappop(pending)
                continue
            if ready_at > now:
                break
            while running and running[0] <= ready_at:
                heapq.heappop(running)
            if len(running) < self.concurrency:
                start = ready_at
            else:
                start = running[0]
                if start > now:
                    break
                heapq.heappop(running)
            heapq.heappop(pending)
            self._queued -= 1
            task.start_at = start
            heapq.heappush(running, task.end_at)
            self._task_started(task)
        while running and running[0] <= now:
            heapq.heappop(running)

    def running(self) -> int:
        """Tasks holding a concurrency slot now."""
        self._advance(self.clock())
        return len(self._running)

    def queued(self) -> int:
        """Tasks created but not yet started now."""
        self._advance(self.clock())
        return self._queued

    def _refresh(self, now: float) -> None:
        self._advance(now)

    def _native_status(self, task: Task, now: float) -> str:
        return self._state(task, now)

    def _state(self, task: Task, now: float) -> str:
        phase = task.phase(now)
        if phase == "waiting":
            # The first half of a task's own wait is reported as created, the rest as queueing.
            created_until = task.created_at + (task.ready_at - task.created_at) / 2
            return "created" if now < created_until else "queueing"
        if phase in ("processing", "success"):
            return phase
        return "failed"

    # -- create ----------------------------------------------------------------------------

    async def _create(self, call: Call) -> web.StreamResponse:
        if len(call.raw) > 20 * MIB:
            return self._error(400, "BadRequest", "request body exceeds 20 MB")
        if not isinstance(call.body, dict):
            return self._error(400, "BadRequest", "request body must be a JSON object")
        for name in call.body:
            if name not in FIELDS:
                return self._error(400, "FieldUnwanted", f"field {name} is not allowed")
        body = {key: value for key, value in call.body.items() if value is not None}
        for name in REQUIRED:
            if name not in body:
                return self._error(400, "FieldLacking", f"field {name} is required")
        try:
            fields = _check_create(body)
        except Refusal as refusal:
            return self._error(400, str(refusal.code), refusal.message)
        now = self.clock()
        self._advance(now)
        if self.reject_over_concurrency and len(self._running) + self._queued >= self.concurrency:
            return self._error(429, "QuotaExceeded", "concurrency quota exceeded")
        credits = fields["duration"] * CREDITS_PER_SECOND[fields["resolution"]]
        if fields["off_peak"]:
            credits //= 2
        if fields["is_rec"]:
            credits += 10
        task_id = str(next(self._task_ids))
        size = fields.pop("image_size")
        width, height = output_size(int(fields["resolution"][:-1]), size[0] / size[1] if size else None)
        info = {
            **fields,
            "credits": credits,
            "creation_id": str(next(self._task_ids)),
            "width": width,
            "height": height,
        }
        wait = self.off_peak_seconds if fields["off_peak"] else None
        task = self._create_task(task_id, body, wait=wait, scheduled=False, info=info)
        heapq.heappush(self._pending, (task.ready_at, next(self._sequence), task))
        self._queued += 1
        self.credit_remain -= credits
        reply = {
            "task_id": task_id,
            "type": "img2video",
            "state": "created",
            "model": fields["model"],
            "style": "general",
            "prompt": fields["prompt"],
            "images": fields["images"],
            "duration": fields["duration"],
            "seed": fields["seed"],
            "aspect_ratio": "",
            "resolution": fields["resolution"],
            "movement_amplitude": fields["movement_amplitude"],
            "created_at": rfc3339(task.created_wall),
            "credits": credits,
            "payload": fields["payload"],
            "cus_priority": 0,
            "off_peak": fields["off_peak"],
            "watermark": fields["watermark"],
            "is_rec": fields["is_rec"],
            "wm_position": fields["wm_position"],
            "wm_url": fields["wm_url"],
            "meta_data": fields["meta_data"],
            "client_request_id": "",
        }
        return json_response(reply)

    # -- queries ---------------------------------------------------------------------------

    def _view(self, task: Task, now: float) -> dict[str, Any]:
        self._reported(task, now)
        return self._task_view(task, now)

    def _task_view(self, task: Task, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        info = task.info
        creations = []
        if phase == "success":
            creations.append(
                {
                    "id": info["creation_id"],
                    "url": self.media_url(f"{task.task_id}.mp4"),
                    "cover_url": self.media_url(f"{task.task_id}.jpg"),
                    "watermarked_url": self.media_url(f"{task.task_id}_wm.mp4"),
                    "video": {
                        "duration": info["duration"],
                        "fps": 24,
                        "resolution": {"width": info["width"], "height": info["height"]},
                    },
                }
            )
        return {
            "id": task.task_id,
            "state": self._state(task, now),
            "err_code": ERR_CODES.get(phase, ""),
            "credits": info["credits"],
            "payload": info["payload"],
            "bgm": False,
            "off_peak": info["off_peak"],
            "creations": creations,
        }

    async def _creations(self, call: Call) -> web.StreamResponse:
        task = self.tasks.get(call.request.match_info["task_id"])
        if task is None:
            return self._error(404, "TaskNotFound", "task not found")
        now = self.clock()
        self._advance(now)
        return json_response(self._view(task, now))

    async def _cancel(self, call: Call) -> web.StreamResponse:
        task_id = call.request.match_info["task_id"]
        task = self.tasks.get(task_id)
        if task is None:
            return self._error(404, "TaskNotFound", "task not found")
        body = call.body
        if not isinstance(body, dict) or "id" not in body:
            return self._error(400, "FieldLacking", "field id is required")
        if str(body["id"]) != task_id:
            return self._error(400, FIELD_INVALID, "id does not match the task in the path")
        now = self.clock()
        self._advance(now)
        state = self._state(task, now)
        if state not in ("created", "queueing"):
            return self._error(400, "BadRequest", f"task state is {state}, can not cancel")
        task.cancelled_at = now
        self._queued -= 1
        callback_url = task.body.get("callback_url")
        if callback_url:
            self._schedule_callback(task, now, "cancelled", str(callback_url))
        self.credit_remain += task.info["credits"]
        task.info["credits"] = 0
        return json_response({})

    async def _tasks(self, call: Call) -> web.StreamResponse:
        query = call.request.query
        try:
            size = int(query.get("pager.pagesz", "10"))
            page = int(query.get("pager.page", "0"))
            token = query.get("pager.page_token", "")
            offset = int(token) if token else page * size
        except ValueError:
            return self._error(400, FIELD_INVALID, "pager fields must be integers")
        if not 1 <= size <= 100 or page < 0 or offset < 0:
            return self._error(400, FIELD_INVALID, "pager.pagesz must be 1..100 and pager.page non-negative")
        wall_now = datetime.now(UTC)
        try:
            since = _parse_time(query["created_at.from"]) if "created_at.from" in query else wall_now - timedelta(7)
            until = _parse_time(query["created_at.to"]) if "created_at.to" in query else wall_now
        except Refusal as refusal:
            return self._error(400, str(refusal.code), refusal.message)
        ids = query.getall("task_ids", []) + query.getall("task_ids[]", [])
        states = set(query.getall("states", []) + query.getall("states[]", []))
        models = set(query.getall("model_versions", []) + query.getall("model_versions[]", []))
        if not states <= STATES:
            return self._error(400, FIELD_INVALID, f"states must be among {sorted(STATES)}")
        now = self.clock()
        self._advance(now)
        if ids:
            found = (self.tasks.get(task_id) for task_id in dict.fromkeys(ids))
            candidates = sorted((task for task in found if task), key=lambda task: task.created_at, reverse=True)
        else:
            candidates = list(reversed(self.tasks.values()))
        matches = [
            task
            for task in candidates
            if since <= task.created_wall <= until
            and (not states or self._state(task, now) in states)
            and (not models or task.info["model"] in models)
        ]
        chunk = matches[offset : offset + size]
        more = offset + size < len(matches)
        tasks = [{**self._view(task, now), "created_at": rfc3339(task.created_wall)} for task in chunk]
        return json_response({"tasks": tasks, "next_page_token": str(offset + size) if more else ""})

    async def _credits(self, call: Call) -> web.StreamResponse:
        self._advance(self.clock())
        remain = {
            "type": "metered",
            "credit_remain": self.credit_remain,
            "concurrency_limit": self.concurrency,
            "current_concurrency": len(self._running),
            "queue_count": self._queued,
        }
        return json_response({"remains": [remain], "packages": []})

    # -- callbacks -------------------------------------------------------------------------

    def _task_started(self, task: Task) -> None:
        callback_url = task.body.get("callback_url")
        if not callback_url or task.start_at is None:
            return
        if task.end_at > task.start_at:
            self._schedule_callback(task, task.start_at, "processing", str(callback_url))
        self._schedule_callback(task, task.end_at, task.outcome.kind, str(callback_url))

    def sign_callback(
        self, url: str, body: bytes, *, date: str | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """The headers a real Vidu sends with a callback to ``url`` (Vidu fact 5; the body is not signed)."""
        del body
        parts = urlsplit(url)
        values = {
            "Date": date if date is not None else formatdate(usegmt=True),
            "x-request-nonce": nonce if nonce is not None else uuid.uuid4().hex,
        }
        lines = ["POST", parts.path or "/", parts.query, "vidu", values["Date"]]
        lines += [f"{name}:{values[name]}" for name in SIGNED_HEADERS]
        signing_string = "".join(f"{line}\n" for line in lines)
        digest = hmac.new(self.api_key.encode(), signing_string.encode(), hashlib.sha256).digest()
        return {
            "Content-Type": "application/json",
            **values,
            "X-HMAC-SIGNED-HEADERS": ";".join(SIGNED_HEADERS),
            "X-HMAC-SIGNATURE": base64.b64encode(digest).decode(),
            "X-HMAC-ALGORITHM": "hmac-sha256",
            "X-HMAC-ACCESS-KEY": "vidu",
        }

    def _callback_body(self, callback: CallbackDue) -> bytes:
        return dump_json(self._task_view(callback.task, callback.moment))

    def _callback_headers(self, callback: CallbackDue, url: str, body: bytes) -> dict[str, str]:
        return self.sign_callback(url, body)

    def _callback_retry_delays(self, callback: CallbackDue) -> Sequence[float]:
        return () if callback.event == "processing" else self.callback_retry_delays

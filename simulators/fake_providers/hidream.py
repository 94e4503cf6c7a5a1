"""Fake HiDream (Pixeling) video API: img2video and video_edit submits, batch and single queries."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

from aiohttp import web

from simulators.fake_providers.common import (
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
    is_number,
    json_response,
    plain_response,
    probe_image,
    retry_after_header,
)

MODULES: Final = "txt2video|img2video|video_edit"
RESOLUTIONS: Final = frozenset({"960*960", "1280*720", "720*1280"})
STYLES: Final = frozenset(
    {
        "barbie_doll",
        "ink_wash",
        "van_goph",
        "hayao_miyazaki",
        "cyber_punk",
        "cartoon",
        "anime",
        "vector_art",
        "abstract",
        "watercolor",
    }
)
INVALID_PARAM: Final = 2001
STATUS: Final = {"waiting": 0, "success": 1, "processing": 2, "failed": 3, "moderation": 4}


def _optional_strings(body: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in body and not isinstance(body[name], str):
            raise Refusal(INVALID_PARAM, f"{name} must be a string")


def _check_img2video(body: dict[str, Any]) -> None:
    image = body.get("image")
    if image is None:
        raise Refusal(INVALID_PARAM, "image is required")
    if not isinstance(image, str) or not image:
        raise Refusal(INVALID_PARAM, "image must be a non-empty string (URL or base64)")
    if image.startswith("data:"):
        raise Refusal(INVALID_PARAM, "image must be an http(s) URL or plain base64, not a data URI")
    if not is_http_url(image):
        raw = decode_base64(image)
        if raw is None:
            raise Refusal(INVALID_PARAM, "image is neither an http(s) URL nor valid base64")
        if probe_image(raw) is None:
            raise Refusal(INVALID_PARAM, "image base64 does not decode to a supported image")
    _optional_strings(body, "prompt", "negative_prompt", "request_id", "notify_url", "version", "resolution")
    if "version" in body and body["version"] != "v2":
        raise Refusal(INVALID_PARAM, 'version must be "v2"')
    if "resolution" in body and body["resolution"] not in RESOLUTIONS:
        raise Refusal(INVALID_PARAM, f"resolution must be one of {sorted(RESOLUTIONS)}")
    for name in ("camera_move_horizontal", "camera_move_vertical", "camera_move_depth"):
        if name in body and not (is_int(body[name]) and -5 <= body[name] <= 5):
            raise Refusal(INVALID_PARAM, f"{name} must be an integer between -5 and 5")
    if "motion_strength" in body and not (is_number(body["motion_strength"]) and 0 <= body["motion_strength"] <= 30):
        raise Refusal(INVALID_PARAM, "motion_strength must be a number between 0 and 30")


def _check_video_edit(body: dict[str, Any]) -> None:
    video = body.get("video_name")
    if video is None:
        raise Refusal(INVALID_PARAM, "video_name is required")
    if not isinstance(video, str) or not video:
        raise Refusal(INVALID_PARAM, "video_name must be a non-empty string (URL or base64)")
    if not is_http_url(video) and decode_base64(video) is None:
        raise Refusal(INVALID_PARAM, "video_name is neither an http(s) URL nor valid base64")
    _optional_strings(body, "prompt", "style", "request_id", "notify_url")
    if not body.get("prompt") and not body.get("style"):
        raise Refusal(INVALID_PARAM, "one of prompt or style is required")
    if "style" in body and body["style"] not in STYLES:
        raise Refusal(INVALID_PARAM, f"style must be one of {sorted(STYLES)}")


class FakeHiDream(FakeProvider):
    """HiDream fake: Bearer auth, HTTP 200 envelopes ``{code, message, request_id, result}``."""

    malformed_body: ClassVar[str] = '{"code": 0, "message": "Success", "resu'

    def __init__(
        self,
        *,
        api_key: str = "hd-test-key",
        prefix: str = "",
        clock: Clock = time.monotonic,
        queue_seconds: float = 0.05,
        run_seconds: float = 0.3,
        video_bytes: bytes | None = None,
        record: bool = True,
        outcome_rule: Callable[[dict[str, Any]], Outcome | None] | None = None,
        tag_media: bool = False,
        rate_per_minute: int | None = None,
        max_batch: int = 100,
        v3_results_only: bool = False,
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
        self.rate_per_minute = rate_per_minute
        self.max_batch = max_batch
        #: Whether tasks created on v3 (img2video) are known only to the v3 results endpoint, as HiDream's own
        #: client suggests by polling the results endpoint of the submit's version; the v2 batch and the v2
        #: single query then answer them with an empty ``sub_task_results``, as for an unknown id.
        self.v3_results_only = v3_results_only
        self._recent_submits: deque[float] = deque()
        #: Whether a callback body comes inside the usual envelope (the notes: undocumented, accept both).
        self.callback_envelope = False
        #: Seconds before each retry of a callback that did not get HTTP 200 (HiDream fact 5: 1 s, 3 tries).
        self.callback_retry_delays: tuple[float, ...] = (1.0, 1.0)
        self._route("POST", "/api-pub/gw/v3/video/img2video/async", "submit_img2video", self._submit_img2video)
        self._route("POST", "/api-pub/gw/v2/video/video_edit/async", "submit_video_edit", self._submit_video_edit)
        self._route(
            "POST", f"/api-pub/gw/v2/video/{{module:{MODULES}}}/async/results/batch", "batch_query", self._batch
        )
        self._route(
            "GET",
            f"/api-pub/gw/{{version:v2|v3}}/video/{{module:{MODULES}}}/async/results",
            "single_query",
            self._single,
        )

    # -- envelope --------------------------------------------------------------------------

    def _request_id(self, call: Call) -> str:
        body = call.body
        if isinstance(body, dict) and isinstance(body.get("request_id"), str) and body["request_id"]:
            return str(body["request_id"])
        return call.request.query.get("request_id") or str(uuid.uuid4())

    def _envelope(
        self,
        call: Call,
        result: Any,
        *,
        code: int = 0,
        message: str = "Success",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        payload = {"code": code, "message": message, "request_id": self._request_id(call), "result": result}
        return json_response(payload, status=status, headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _unauthorized(self, call: Call) -> web.Response:
        return self._envelope(call, None, code=401, message="unauthorized", status=401)

    def _precheck(self, call: Call) -> web.Response | None:
        if call.request.method == "POST" and call.request.content_type != "application/json":
            return self._envelope(call, None, code=INVALID_PARAM, message="Content-Type must be application/json")
        return None

    def _render_fault(self, call: Call, fault: Fault) -> web.Response:
        kind = fault.kind
        if kind == "server_error":
            return plain_response(int(fault.get("status", 500)))
        if kind == "business_error":
            code = int(fault.get("code", 1001))
            return self._envelope(call, None, code=code, message=str(fault.get("message", "system busy")))
        if kind == "rate_limited":
            return self._envelope(
                call, None, code=429, message="too many requests", status=429, headers=retry_after_header(fault)
            )
        if kind == "concurrency":
            return self._envelope(call, None, code=429, message="task limit reached, try again later", status=429)
        if kind == "moderation":
            message = str(fault.get("message", "content review failed: the input did not pass moderation"))
            return self._envelope(call, None, code=int(fault.get("code", 1)), message=message)
        if kind == "echo_key":
            return self._envelope(call, None, code=INVALID_PARAM, message=f"invalid request for key {self.api_key}")
        raise ValueError(f"unhandled fault {kind!r}")

    # -- submits ---------------------------------------------------------------------------

    async def _submit_img2video(self, call: Call) -> web.StreamResponse:
        return self._submit(call, "img2video")

    async def _submit_video_edit(self, call: Call) -> web.StreamResponse:
        return self._submit(call, "video_edit")

    def _submit(self, call: Call, module: str) -> web.Response:
        if self.rate_per_minute is not None:
            window = self._recent_submits
            while window and window[0] <= call.at - 60.0:
                window.popleft()
            if len(window) >= self.rate_per_minute:
                return self._render_fault(call, Fault("concurrency", {}))
        if not isinstance(call.body, dict):
            return self._envelope(call, None, code=INVALID_PARAM, message="request body must be a JSON object")
        body = {key: value for key, value in call.body.items() if value is not None}
        try:
            (_check_img2video if module == "img2video" else _check_video_edit)(body)
        except Refusal as refusal:
            return self._envelope(call, None, code=int(refusal.code), message=refusal.message)
        task_id = str(uuid.uuid4())
        sub_task_id = str(uuid.uuid4())
        width, height = (int(side) for side in str(body.get("resolution", "1280*720")).split("*"))
        version = "v3" if module == "img2video" else "v2"
        info = {"module": module, "version": version, "sub_task_id": sub_task_id, "width": width, "height": height}
        task = self._create_task(task_id, body, info=info)
        notify_url = body.get("notify_url")
        if notify_url:
            self._schedule_callback(task, task.end_at, task.outcome.kind, str(notify_url))
        self._recent_submits.append(call.at)
        return self._envelope(call, {"task_id": task_id, "sub_task_ids": [sub_task_id]})

    # -- queries ---------------------------------------------------------------------------

    def _sub_task_result(self, task: Task, now: float) -> dict[str, Any]:
        self._reported(task, now)
        return self._sub_task_view(task, now)

    def _sub_task_view(self, task: Task, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        done = phase == "success"
        progress = task.progress(now)
        return {
            "sub_task_id": task.info["sub_task_id"],
            "task_status": STATUS[phase],
            # Whole values go out as ints, as in the documented example ("task_completion": 1).
            "task_completion": int(progress) if progress in (0.0, 1.0) else progress,
            "video": self.media_url(f"{task.task_id}.mp4") if done else "",
            "video_wm": self.media_url(f"{task.task_id}_wm.mp4") if done else "",
        }

    def _native_status(self, task: Task, now: float) -> int:
        return STATUS[task.phase(now)]

    def _task_result(self, task_id: str, module: str, version: str, now: float) -> dict[str, Any]:
        task = self.tasks.get(task_id)
        hidden = self.v3_results_only and task is not None and task.info["version"] == "v3" and version != "v3"
        if task is None or task.info["module"] != module or hidden:
            return {"task_id": task_id, "sub_task_results": []}
        return {"task_id": task_id, "sub_task_results": [self._sub_task_result(task, now)]}

    async def _batch(self, call: Call) -> web.StreamResponse:
        body = call.body
        if not isinstance(body, dict):
            return self._envelope(call, None, code=INVALID_PARAM, message="request body must be a JSON object")
        ids = body.get("task_id_list")
        if ids is None:
            return self._envelope(call, None, code=INVALID_PARAM, message="task_id_list is required")
        if not isinstance(ids, list) or not all(isinstance(task_id, str) for task_id in ids):
            return self._envelope(call, None, code=INVALID_PARAM, message="task_id_list must be a list of strings")
        if len(ids) > self.max_batch:
            message = f"task_id_list holds {len(ids)} ids; at most {self.max_batch} are allowed"
            return self._envelope(call, None, code=INVALID_PARAM, message=message)
        if body.get("notify_url") is not None and not isinstance(body["notify_url"], str):
            return self._envelope(call, None, code=INVALID_PARAM, message="notify_url must be a string")
        module = call.request.match_info["module"]
        now = self.clock()
        return self._envelope(call, [self._task_result(task_id, module, "v2", now) for task_id in ids])

    async def _single(self, call: Call) -> web.StreamResponse:
        task_id = call.request.query.get("task_id")
        if not task_id:
            return self._envelope(call, None, code=INVALID_PARAM, message="task_id is required")
        module = call.request.match_info["module"]
        version = call.request.match_info["version"]
        return self._envelope(call, self._task_result(task_id, module, version, self.clock()))

    # -- callbacks -------------------------------------------------------------------------

    def _callback_body(self, callback: CallbackDue) -> bytes:
        task = callback.task
        item: dict[str, Any] = {
            "task_id": task.task_id,
            "sub_task_results": [self._sub_task_view(task, callback.moment)],
        }
        if task.info["module"] == "video_edit":
            # Seed 001: the stylization callback names the task main_task_id.
            item["main_task_id"] = task.task_id
        if not self.callback_envelope:
            return dump_json(item)
        request_id = task.body.get("request_id") or str(uuid.uuid4())
        return dump_json({"code": 0, "message": "Success", "request_id": request_id, "result": item})

    def _callback_retry_delays(self, callback: CallbackDue) -> Sequence[float]:
        return self.callback_retry_delays

"""Fake PixVerse platform API: image upload, img2video generate, result, balance."""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

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
    dump_json,
    is_http_url,
    is_int,
    output_size,
    plain_response,
    probe_image,
    retry_after_header,
    rfc3339,
)

MODELS: Final = ("v3.5", "v4", "v4.5", "v5", "v5.5", "v5.6", "v6", "c1")
BELOW_V5: Final = frozenset({"v3.5", "v4", "v4.5"})
QUALITY_CREDITS: Final = {"360p": 9, "540p": 9, "720p": 12, "1080p": 24}
CAMERA_MOVES: Final = frozenset(
    {
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
    }
)
# The seed's "day" is a typo for "clay" (PixVerse-MCP and ComfyUI list clay), so "day" is refused.
STYLES: Final = frozenset({"anime", "3d_animation", "clay", "cyberpunk", "comic"})
THINKING: Final = frozenset({"enabled", "disabled", "auto"})
STATUS: Final = {"waiting": 5, "processing": 5, "success": 1, "deleted": 6, "moderation": 7, "failed": 8}
UPLOAD_FORMATS: Final = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
WEBHOOK_EVENTS: Final = frozenset({"success", "moderation", "failed"})
WEBHOOK_FIELDS: Final = ("id", "status", "url", "size", "has_audio", "credits")
MODERATION_MESSAGES: Final = {
    500054: "image moderation failed",
    500063: "input pre-moderation failed",
}

EMPTY_PARAM: Final = 400011
BAD_BINDING: Final = 400013
BAD_PARAM: Final = 400017
PROMPT_TOO_LONG: Final = 400018
NEGATIVE_TOO_LONG: Final = 400019
BAD_IMAGE_ID: Final = 400032
NOT_FOUND: Final = 500008
IMAGE_TOO_LARGE: Final = 500030
BAD_IMAGE_FORMAT: Final = 500032
CONCURRENCY_LIMIT: Final = 500044
INVALID_KEY: Final = 10005


@dataclass(frozen=True, slots=True)
class Upload:
    """An image accepted by the upload endpoint."""

    img_id: int
    width: int
    height: int
    extension: str
    data: bytes
    url: str


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def webhook_signing_body(body: Mapping[str, Any]) -> str:
    """The notes' reading of PixVerse's signing body: top-level fields by key, as an HTML form encodes them."""
    return urlencode([(key, _form_value(body[key])) for key in sorted(body)])


def _typed(body: dict[str, Any], name: str, kind: type | tuple[type, ...], label: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise Refusal(BAD_BINDING, f"{name} must be {label}")
    return value


def _check_duration(model: str, quality: str, duration: int) -> None:
    if model in ("v6", "c1"):
        if not 1 <= duration <= 15:
            raise Refusal(BAD_PARAM, f"duration for {model} must be between 1 and 15")
    elif model in ("v5.5", "v5.6"):
        if duration not in (5, 8, 10):
            raise Refusal(BAD_PARAM, f"duration for {model} must be 5, 8 or 10")
        if duration == 10 and quality == "1080p":
            raise Refusal(BAD_PARAM, f"duration 10 is not available at 1080p for {model}")
    else:
        if duration not in (5, 8):
            raise Refusal(BAD_PARAM, f"duration for {model} must be 5 or 8")
        if model == "v3.5" and duration == 8 and quality == "1080p":
            raise Refusal(BAD_PARAM, "duration 8 is not available at 1080p for v3.5")


def _check_generate(body: dict[str, Any], uploads: dict[int, Upload]) -> None:
    for name in ("duration", "model", "prompt", "quality"):
        if name not in body:
            raise Refusal(EMPTY_PARAM, f"{name} is required")
    if ("img_id" in body) == ("img_ids" in body):
        raise Refusal(BAD_PARAM, "exactly one of img_id or img_ids is required")
    model = _typed(body, "model", str, "a string")
    if model not in MODELS:
        raise Refusal(BAD_PARAM, f"model must be one of {list(MODELS)}")
    quality = _typed(body, "quality", str, "a string")
    if quality not in QUALITY_CREDITS:
        raise Refusal(BAD_PARAM, f"quality must be one of {list(QUALITY_CREDITS)}")
    duration = _typed(body, "duration", int, "an integer")
    _check_duration(model, quality, duration)
    prompt = _typed(body, "prompt", str, "a string")
    if len(prompt) > 2048:
        raise Refusal(PROMPT_TOO_LONG, "prompt exceeds 2048 characters")
    negative = _typed(body, "negative_prompt", str, "a string")
    if negative is not None and len(negative) > 2048:
        raise Refusal(NEGATIVE_TOO_LONG, "negative_prompt exceeds 2048 characters")
    if "img_id" in body:
        if not is_int(body["img_id"]) or body["img_id"] not in uploads:
            raise Refusal(BAD_IMAGE_ID, "img_id is not a known uploaded image")
    else:
        ids = body["img_ids"]
        if not isinstance(ids, list) or not ids or not all(is_int(i) and i in uploads for i in ids):
            raise Refusal(BAD_IMAGE_ID, "img_ids must list known uploaded images")
    templated = bool(_typed(body, "template_id", int, "an integer"))
    motion = _typed(body, "motion_mode", str, "a string")
    if motion is not None:
        if motion not in ("normal", "fast"):
            raise Refusal(BAD_PARAM, 'motion_mode must be "normal" or "fast"')
        # "normal" is the default, so it is tolerated everywhere (the seed's own v6 example sends it).
        if motion != "normal" and model not in BELOW_V5:
            raise Refusal(BAD_PARAM, f"motion_mode is not supported by model {model}")
        if motion == "fast" and duration == 8:
            raise Refusal(BAD_PARAM, "motion_mode fast does not support 8 s")
    camera = _typed(body, "camera_movement", str, "a string")
    if camera is not None:
        if camera not in CAMERA_MOVES:
            raise Refusal(BAD_PARAM, f"camera_movement must be one of {sorted(CAMERA_MOVES)}")
        if model not in ("v4", "v4.5"):
            raise Refusal(BAD_PARAM, f"camera_movement is not supported by model {model}")
    sound_on = _typed(body, "sound_effect_switch", bool, "a boolean")
    sound_text = _typed(body, "sound_effect_content", str, "a string")
    if (sound_on or sound_text) and model not in BELOW_V5 and not templated:
        raise Refusal(BAD_PARAM, f"sound_effect_* is not supported by model {model}")
    _typed(body, "lip_sync_tts_switch", bool, "a boolean")
    _typed(body, "lip_sync_tts_speaker_id", str, "a string")
    tts = _typed(body, "lip_sync_tts_content", str, "a string")
    if tts is not None and len(tts) > 140:
        raise Refusal(BAD_PARAM, "lip_sync_tts_content exceeds 140 characters")
    if _typed(body, "generate_audio_switch", bool, "a boolean") and model not in ("v5.5", "v5.6", "v6", "c1"):
        raise Refusal(BAD_PARAM, f"generate_audio_switch is not supported by model {model}")
    if _typed(body, "generate_multi_clip_switch", bool, "a boolean") and model not in ("v5.5", "v6"):
        raise Refusal(BAD_PARAM, f"generate_multi_clip_switch is not supported by model {model}")
    thinking = _typed(body, "thinking_type", str, "a string")
    if thinking is not None:
        if thinking not in THINKING:
            raise Refusal(BAD_PARAM, f"thinking_type must be one of {sorted(THINKING)}")
        if thinking != "auto" and model not in ("v5.5", "v5.6", "v6"):
            raise Refusal(BAD_PARAM, f"thinking_type is not supported by model {model}")
    seed = _typed(body, "seed", int, "an integer")
    if seed is not None and not 0 <= seed <= 2147483647:
        raise Refusal(BAD_PARAM, "seed must be between 0 and 2147483647")
    style = _typed(body, "style", str, "a string")
    if style is not None and style not in STYLES:
        raise Refusal(BAD_PARAM, f"style must be one of {sorted(STYLES)}")


class FakePixVerse(FakeProvider):
    """PixVerse fake: ``API-KEY`` + ``Ai-trace-id`` headers, HTTP 200 envelopes ``{ErrCode, ErrMsg, Resp}``."""

    outcome_kinds: ClassVar[frozenset[str]] = frozenset({"success", "failed", "moderation", "stall", "deleted"})
    malformed_body: ClassVar[str] = '{"ErrCode": 0, "ErrMsg": "success", "Re'

    def __init__(
        self,
        *,
        api_key: str = "pv-test-key",
        prefix: str = "",
        clock: Clock = time.monotonic,
        queue_seconds: float = 0.05,
        run_seconds: float = 0.3,
        video_bytes: bytes | None = None,
        record: bool = True,
        outcome_rule: Callable[[dict[str, Any]], Outcome | None] | None = None,
        tag_media: bool = False,
        max_concurrent: int | None = None,
        allow_image_url: bool = False,
        credit_monthly: int = 1000,
        credit_package: int = 100_000,
        trace_cache_size: int = 100_000,
        replay_refusals: bool = False,
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
        self.max_concurrent = max_concurrent
        self.allow_image_url = allow_image_url
        self.account_id = 202409001
        self.credit_monthly = credit_monthly
        self.credit_package = credit_package
        self.trace_cache_size = trace_cache_size
        #: Whether a generate that repeats a refused trace id gets the same refusal again. PixVerse replays
        #: the earlier answer to a reused trace id; whether that includes refusals is not documented.
        self.replay_refusals = replay_refusals
        self._refusals: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self.uploads: dict[int, Upload] = {}
        self._image_ids = itertools.count(388412905701376)
        self._video_ids = itertools.count(391504480090022)
        self._video_by_trace: dict[str, int] = {}
        self._responses: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._ends: list[float] = []
        #: The account webhook as set in PixVerse's console; both must be set for webhooks to go out.
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        #: Seconds before each retry of a webhook that did not get HTTP 200 (fact 7: 8 tries from 2 s on).
        self.webhook_retry_delays: tuple[float, ...] = (2, 4, 8, 16, 32, 64, 128)
        self._route("POST", "/openapi/v2/image/upload", "upload", self._upload)
        self._route("POST", "/openapi/v2/video/img/generate", "generate", self._generate)
        self._route("GET", "/openapi/v2/video/result/{video_id}", "result", self._result)
        self._route("GET", "/openapi/v2/account/balance", "balance", self._balance)

    # -- envelope --------------------------------------------------------------------------

    def _reply(
        self,
        call: Call,
        resp: Any,
        *,
        code: int = 0,
        message: str = "success",
        status: int = 200,
        headers: dict[str, str] | None = None,
        remember: bool = True,
    ) -> web.Response:
        body = dump_json({"ErrCode": code, "ErrMsg": message, "Resp": resp})
        trace = call.request.headers.get("Ai-trace-id")
        if trace and code != 0 and code != INVALID_KEY and call.route == "generate":
            self._remember(self._refusals, trace, (status, body))
        if remember and trace:
            self._remember(self._responses, trace, (status, body))
        return web.Response(body=body, status=status, headers=headers, content_type="application/json")

    def _remember(self, answers: OrderedDict[str, tuple[int, bytes]], trace: str, answer: tuple[int, bytes]) -> None:
        answers[trace] = answer
        answers.move_to_end(trace)
        if len(answers) > self.trace_cache_size:
            answers.popitem(last=False)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("API-KEY") == self.api_key

    def _unauthorized(self, call: Call) -> web.Response:
        return self._reply(call, None, code=INVALID_KEY, message="invalid API key", status=401, remember=False)

    def _precheck(self, call: Call) -> web.Response | None:
        if not call.request.headers.get("Ai-trace-id", "").strip():
            return self._reply(call, None, code=EMPTY_PARAM, message="Ai-trace-id header is required", remember=False)
        if self.replay_refusals and call.route == "generate":
            refused = self._refusals.get(call.request.headers["Ai-trace-id"])
            if refused is not None:
                status, body = refused
                return web.Response(body=body, status=status, content_type="application/json")
        return None

    def _render_fault(self, call: Call, fault: Fault) -> web.Response:
        kind = fault.kind
        if kind == "server_error":
            return plain_response(int(fault.get("status", 500)))
        if kind == "business_error":
            code = int(fault.get("code", 500069))
            message = str(fault.get("message", "system is busy, please try again later"))
            return self._reply(call, None, code=code, message=message, remember=False)
        if kind == "rate_limited":
            headers = retry_after_header(fault)
            return self._reply(
                call, None, code=429, message="too many requests", status=429, headers=headers, remember=False
            )
        if kind == "concurrency":
            return self._concurrency(call)
        if kind == "moderation":
            code = int(fault.get("code", 500054))
            message = str(fault.get("message", MODERATION_MESSAGES.get(code, "moderation failed")))
            return self._reply(call, None, code=code, message=message, remember=False)
        if kind == "echo_key":
            message = f"invalid request for key {self.api_key}"
            return self._reply(call, None, code=BAD_PARAM, message=message, remember=False)
        raise ValueError(f"unhandled fault {kind!r}")

    def _concurrency(self, call: Call) -> web.Response:
        message = "concurrent generation limit reached"
        return self._reply(call, None, code=CONCURRENCY_LIMIT, message=message, remember=False)

    # -- upload ----------------------------------------------------------------------------

    async def _upload(self, call: Call) -> web.StreamResponse:
        form = call.form or {}
        image = form.get("image")
        image_url = form.get("image_url")
        if isinstance(image, bytes):
            try:
                width, height, extension = self._check_upload(image)
            except Refusal as refusal:
                return self._reply(call, None, code=int(refusal.code), message=refusal.message)
            img_id = next(self._image_ids)
            url = self.media_url(f"img-{img_id}.{extension}")
            upload = Upload(img_id, width, height, extension, image, url)
        elif self.allow_image_url and isinstance(image_url, str) and is_http_url(image_url):
            img_id = next(self._image_ids)
            upload = Upload(img_id, 1280, 720, "", b"", image_url)
        else:
            return self._reply(call, None, code=EMPTY_PARAM, message="image file is required")
        self.uploads[img_id] = upload
        return self._reply(call, {"img_id": img_id, "img_url": upload.url})

    @staticmethod
    def _check_upload(image: bytes) -> tuple[int, int, str]:
        if len(image) > 20 * MIB:
            raise Refusal(IMAGE_TOO_LARGE, "image exceeds 20 MB")
        info = probe_image(image)
        if info is not None and info.oversized:
            raise Refusal(IMAGE_TOO_LARGE, "image exceeds 4000x4000 px")
        if info is None or info.format not in UPLOAD_FORMATS:
            raise Refusal(BAD_IMAGE_FORMAT, "image format is not supported (png, jpeg, webp)")
        if info.width > 4000 or info.height > 4000:
            raise Refusal(IMAGE_TOO_LARGE, "image exceeds 4000x4000 px")
        return info.width, info.height, UPLOAD_FORMATS[info.format]

    def _media_payload(self, name: str) -> tuple[bytes, str] | None:
        if name.startswith("img-"):
            stem, _, extension = name[4:].partition(".")
            upload = self.uploads.get(int(stem)) if stem.isdigit() else None
            if upload is None or not upload.data or upload.extension != extension:
                return None
            return upload.data, f"image/{'jpeg' if extension == 'jpg' else extension}"
        return super()._media_payload(name)

    def _task_for_media(self, stem: str) -> Task | None:
        return self.tasks.get(int(stem)) if stem.isdigit() else None

    # -- generate --------------------------------------------------------------------------

    def unfinished(self) -> int:
        """How many tasks are still at status 5 now."""
        now = self.clock()
        while self._ends and self._ends[0] <= now:
            heapq.heappop(self._ends)
        return len(self._ends)

    async def _generate(self, call: Call) -> web.StreamResponse:
        trace = call.request.headers["Ai-trace-id"]
        known = self._video_by_trace.get(trace)
        if known is not None:
            return self._reply(call, {"video_id": known, "credits": self.tasks[known].info["credits"]})
        if call.body is None:
            return self._reply(call, None, code=EMPTY_PARAM, message="request body is required")
        if not isinstance(call.body, dict):
            return self._reply(call, None, code=BAD_BINDING, message="request body must be a JSON object")
        body = {key: value for key, value in call.body.items() if value is not None}
        try:
            _check_generate(body, self.uploads)
        except Refusal as refusal:
            return self._reply(call, None, code=int(refusal.code), message=refusal.message)
        if self.max_concurrent is not None and self.unfinished() >= self.max_concurrent:
            return self._concurrency(call)
        video_id = next(self._video_ids)
        credits = body["duration"] * QUALITY_CREDITS[body["quality"]]
        upload = self.uploads[body["img_id"] if "img_id" in body else body["img_ids"][0]]
        width, height = output_size(int(body["quality"][:-1]), upload.width / upload.height)
        info = {
            "credits": credits,
            "duration": body["duration"],
            "seed": body.get("seed", random.randint(1, 2147483647)),
            "width": width,
            "height": height,
            "has_audio": bool(
                body.get("generate_audio_switch") or body.get("sound_effect_switch") or body.get("lip_sync_tts_switch")
            ),
        }
        task = self._create_task(video_id, body, info=info)
        heapq.heappush(self._ends, task.end_at)
        if task.outcome.kind in WEBHOOK_EVENTS:
            # An account webhook: whether and where it goes is read when the task ends.
            self._schedule_callback(task, task.end_at, task.outcome.kind, "")
        self._video_by_trace[trace] = video_id
        spent_monthly = min(self.credit_monthly, credits)
        self.credit_monthly -= spent_monthly
        self.credit_package = max(0, self.credit_package - (credits - spent_monthly))
        return self._reply(call, {"video_id": video_id, "credits": credits})

    # -- result and balance ----------------------------------------------------------------

    def _native_status(self, task: Task, now: float) -> int:
        return STATUS[task.phase(now)]

    def _result_view(self, task: Task, now: float) -> dict[str, Any]:
        self._reported(task, now)
        return self._result_fields(task, now)

    def _result_fields(self, task: Task, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        done = phase == "success"
        body = task.body
        size = 0
        if done:
            payload = self._media_payload(f"{task.task_id}.mp4")
            size = len(payload[0]) if payload else 0
        return {
            "id": task.task_id,
            "status": STATUS[phase],
            "url": self.media_url(f"{task.task_id}.mp4") if done else "",
            "prompt": body.get("prompt", ""),
            "negative_prompt": body.get("negative_prompt", ""),
            "seed": task.info["seed"],
            "style": body.get("style", ""),
            "size": size,
            "outputWidth": task.info["width"],
            "outputHeight": task.info["height"],
            "resolution_ratio": int(body["quality"][:-1]),
            "create_time": rfc3339(task.created_wall),
            "modify_time": rfc3339(task.wall(task.changed_at(now))),
            "has_audio": task.info["has_audio"],
            "credits": task.info["credits"],
        }

    async def _result(self, call: Call) -> web.StreamResponse:
        trace = call.request.headers["Ai-trace-id"]
        cached = self._responses.get(trace)
        if cached is not None:
            # Documented behaviour: a reused trace id gets the earlier (stale) answer.
            status, body = cached
            return web.Response(body=body, status=status, content_type="application/json")
        raw_id = call.request.match_info["video_id"]
        if not raw_id.isdigit():
            return self._reply(call, None, code=BAD_BINDING, message="video_id must be an integer")
        task = self.tasks.get(int(raw_id))
        if task is None:
            return self._reply(call, None, code=NOT_FOUND, message="data not found")
        return self._reply(call, self._result_view(task, self.clock()))

    async def _balance(self, call: Call) -> web.StreamResponse:
        resp = {
            "account_id": self.account_id,
            "credit_monthly": self.credit_monthly,
            "credit_package": self.credit_package,
        }
        return self._reply(call, resp)

    # -- webhook ---------------------------------------------------------------------------

    def sign_webhook(
        self, body: Mapping[str, Any], *, timestamp: int | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """The headers PixVerse sends with a webhook carrying ``body`` (fact 7, signed with ``webhook_secret``)."""
        if not self.webhook_secret:
            raise ValueError("set webhook_secret before signing a webhook")
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        once = nonce if nonce is not None else uuid.uuid4().hex
        message = f"{stamp}\n{once}\n{webhook_signing_body(body)}"
        digest = hmac.new(self.webhook_secret.encode(), message.encode(), hashlib.sha256).digest()
        return {
            "Content-Type": "application/json",
            "Webhook-Timestamp": stamp,
            "Webhook-Nonce": once,
            "Webhook-Signature": base64.b64encode(digest).decode(),
            "Ai-Trace-Id": str(uuid.uuid4()),
        }

    def _callback_target(self, callback: CallbackDue) -> str | None:
        return self.webhook_url if self.webhook_url and self.webhook_secret else None

    def _callback_body(self, callback: CallbackDue) -> bytes:
        fields = self._result_fields(callback.task, callback.moment)
        return dump_json({name: fields[name] for name in WEBHOOK_FIELDS})

    def _callback_headers(self, callback: CallbackDue, url: str, body: bytes) -> dict[str, str]:
        return self.sign_webhook(json.loads(body))

    def _callback_retry_delays(self, callback: CallbackDue) -> Sequence[float]:
        return self.webhook_retry_delays

"""Shared machinery for the fake provider servers: recording, faults, tasks and media."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import heapq
import io
import itertools
import json
import math
import struct
import time
import warnings
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from http import HTTPStatus
from typing import Any, ClassVar, Final, Self
from urllib.parse import urlsplit

import aiohttp
from aiohttp import BodyPartReader, web
from multidict import MultiMapping
from PIL import Image
from yarl import URL

Clock = Callable[[], float]
Handler = Callable[["Call"], Awaitable[web.StreamResponse]]

OUTCOME_KINDS: Final = frozenset({"success", "failed", "moderation", "stall", "deleted"})
FAULT_PARAMS: Final[Mapping[str, frozenset[str]]] = {
    "server_error": frozenset({"status", "body"}),
    "hang": frozenset({"seconds", "after", "lands_late"}),
    "malformed": frozenset({"body"}),
    "business_error": frozenset({"code", "message", "reason", "status"}),
    "rate_limited": frozenset({"retry_after"}),
    "concurrency": frozenset(),
    "moderation": frozenset({"code", "message"}),
    "unauthorized": frozenset(),
    "echo_key": frozenset(),
}
FAULT_KINDS: Final = frozenset(FAULT_PARAMS)
MIB: Final = 1024 * 1024
MAX_BODY: Final = 64 * MIB
INVALID: Final[Any] = object()
"""Stands in for a request body that was present but is not valid JSON."""
CALLBACK_TRY_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the next created task ends; ``None`` timings fall back to the fake's defaults."""

    kind: str = "success"
    queue_seconds: float | None = None
    run_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OUTCOME_KINDS:
            raise ValueError(f"unknown outcome kind {self.kind!r}; expected one of {sorted(OUTCOME_KINDS)}")


class OutcomeQueue(deque[Outcome]):
    """A deque of scripted outcomes that refuses kinds its fake cannot express."""

    def __init__(self, allowed: frozenset[str]) -> None:
        super().__init__()
        self.allowed = allowed

    def _check(self, outcome: Outcome) -> Outcome:
        if not isinstance(outcome, Outcome):
            raise TypeError(f"expected an Outcome, got {outcome!r}")
        if outcome.kind not in self.allowed:
            raise ValueError(f"this fake does not support outcome {outcome.kind!r}")
        return outcome

    def append(self, outcome: Outcome) -> None:
        """Queue one outcome."""
        super().append(self._check(outcome))

    def appendleft(self, outcome: Outcome) -> None:
        """Queue one outcome ahead of the others."""
        super().appendleft(self._check(outcome))

    def extend(self, outcomes: Iterable[Outcome]) -> None:
        """Queue several outcomes in order."""
        super().extend(self._check(outcome) for outcome in outcomes)

    def insert(self, index: int, outcome: Outcome) -> None:
        """Queue one outcome at a position."""
        super().insert(index, self._check(outcome))


class FakeClock:
    """A hand-driven clock: pass it as ``clock=`` and move time with :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward and return the new reading."""
        self.now += seconds
        return self.now


@dataclass(frozen=True, slots=True)
class Fault:
    """One queued misbehaviour for a route."""

    kind: str
    params: Mapping[str, Any]

    def get(self, name: str, default: Any) -> Any:
        """Return a parameter or its default."""
        return self.params.get(name, default)


@dataclass(slots=True)
class _QueuedFault:
    fault: Fault
    remaining: int


@dataclass(slots=True)
class RecordedRequest:
    """What the fake saw; ``headers`` is the case-insensitive mapping aiohttp parsed."""

    method: str
    path: str
    query: dict[str, str | list[str]]
    headers: Mapping[str, str]
    json: Any
    form: dict[str, bytes | str] | None
    route: str
    at: float


@dataclass(slots=True)
class Call:
    """A received request, its parsed body and the route it matched."""

    request: web.Request
    route: str
    at: float
    raw: bytes
    body: Any
    form: dict[str, bytes | str] | None


@dataclass(eq=False, slots=True)
class Task:
    """A created job whose state follows from clock time, so no background work is needed."""

    task_id: Any
    created_at: float
    created_wall: datetime
    outcome: Outcome
    body: dict[str, Any]
    ready_at: float
    run_seconds: float
    start_at: float | None
    cancelled_at: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: When a status answer first told a client the task had ended (None: not yet); until then the
    #: client must count the task as running at the provider.
    reported_final_at: float | None = None

    @property
    def end_at(self) -> float:
        """When the task reaches its terminal state (infinity while unscheduled or stalled)."""
        if self.start_at is None or self.outcome.kind == "stall":
            return math.inf
        return self.start_at + self.run_seconds

    def phase(self, now: float) -> str:
        """Return waiting, processing, cancelled or the outcome kind once finished."""
        if self.cancelled_at is not None:
            return "cancelled"
        if self.start_at is None or now < self.start_at:
            return "waiting"
        if now < self.end_at:
            return "processing"
        return self.outcome.kind

    def progress(self, now: float) -> float:
        """Return 0..1, linear in processing time; a stalled task freezes at 0.99."""
        phase = self.phase(now)
        if phase == "success":
            return 1.0
        if phase != "processing" or self.start_at is None:
            return 0.0
        if self.run_seconds <= 0:
            return 0.99
        return round(min((now - self.start_at) / self.run_seconds, 0.99), 2)

    def changed_at(self, now: float) -> float:
        """Clock time of the latest state change at ``now``."""
        if self.cancelled_at is not None:
            return self.cancelled_at
        if self.start_at is None or now < self.start_at:
            return self.created_at
        return self.start_at if now < self.end_at else self.end_at

    def wall(self, moment: float) -> datetime:
        """Map a clock reading onto wall time, anchored at creation."""
        return self.created_wall + timedelta(seconds=moment - self.created_at)


@dataclass(frozen=True, slots=True)
class SentCallback:
    """One try at delivering a callback; ``status`` is None when the connection failed or timed out."""

    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None
    attempt: int
    event: str
    task_id: Any
    at: float


@dataclass(frozen=True, slots=True)
class DroppedCallback:
    """A callback the fake did not send because ``drop_callbacks`` was set."""

    url: str
    event: str
    task_id: Any
    at: float


@dataclass(eq=False, slots=True)
class CallbackDue:
    """A callback waiting for its moment: ``moment`` is when the event happened, the body shows the task then."""

    task: Task
    event: str
    url: str
    moment: float
    attempt: int = 1
    body: bytes | None = None


class Refusal(Exception):
    """A request the provider refuses; ``code`` is the provider's own error code or reason."""

    def __init__(self, code: int | str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """Basic facts about a decoded image."""

    width: int
    height: int
    format: str
    oversized: bool = False


def probe_image(data: bytes) -> ImageInfo | None:
    """Identify an image with Pillow; ``None`` when the bytes are not one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                kind = image.format or ""
                image.verify()
    except Image.DecompressionBombError:
        return ImageInfo(0, 0, "", oversized=True)
    except Exception:
        return None
    return ImageInfo(width, height, kind)


def decode_base64(text: str) -> bytes | None:
    """Strictly decode standard base64; ``None`` if it is not."""
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def is_http_url(value: str) -> bool:
    """True for an absolute http(s) URL with a host."""
    if not value.startswith(("http://", "https://")):
        return False
    try:
        return bool(urlsplit(value).netloc)
    except ValueError:
        return False


def is_int(value: Any) -> bool:
    """True for a JSON integer (bools excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for a JSON number (bools excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def output_size(short_side: int, aspect: float | None) -> tuple[int, int]:
    """Pick even video dimensions for a short side and an input aspect ratio (default 16:9)."""
    ratio = aspect if aspect and aspect > 0 else 16 / 9
    if ratio >= 1:
        return 2 * round(short_side * ratio / 2), short_side
    return short_side, 2 * round(short_side / ratio / 2)


def dump_json(payload: Any) -> bytes:
    """Serialise compactly (the benchmark sends many requests)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """Build an application/json response."""
    return web.Response(body=dump_json(payload), status=status, headers=headers, content_type="application/json")


def plain_response(status: int, text: str | None = None) -> web.Response:
    """A plain-text reply such as a gateway would give."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return web.Response(status=status, text=text if text is not None else f"{status}: {phrase}")


def retry_after_header(fault: Fault) -> dict[str, str]:
    """Render the ``Retry-After`` header of a rate_limited fault as whole seconds."""
    seconds = float(fault.get("retry_after", 1))
    return {"Retry-After": str(max(0, math.ceil(seconds)))}


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full_box(kind: bytes, version_flags: int, payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version_flags) + payload)


def _video_track(duration_ms: int, width: int, height: int) -> bytes:
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    # flags 3: track enabled and used in the movie.
    tkhd = _full_box(
        b"tkhd",
        3,
        struct.pack(">IIIII", 0, 0, 1, 0, duration_ms)
        + bytes(8)
        + struct.pack(">hhH2x", 0, 0, 0)
        + matrix
        + struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(b"mdhd", 0, struct.pack(">IIIIHH", 0, 0, 1000, duration_ms, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", 0, struct.pack(">I4s12x", 0, b"vide") + b"VideoHandler\x00")
    vmhd = _full_box(b"vmhd", 1, bytes(8))
    dinf = _box(b"dinf", _full_box(b"dref", 0, struct.pack(">I", 1) + _full_box(b"url ", 1, b"")))
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, struct.pack(">I", 0))
        + _full_box(b"stts", 0, struct.pack(">I", 0))
        + _full_box(b"stsc", 0, struct.pack(">I", 0))
        + _full_box(b"stsz", 0, struct.pack(">II", 0, 0))
        + _full_box(b"stco", 0, struct.pack(">I", 0)),
    )
    minf = _box(b"minf", vmhd + dinf + stbl)
    return _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr + minf))


@lru_cache(maxsize=64)
def build_mp4(
    duration: float = 5.0, payload_size: int = 2048, width: int = 1280, height: int = 720, tag: bytes = b""
) -> bytes:
    """Build a small ISO-BMFF file: ftyp, moov (mvhd with ``duration``, one video trak), mdat (``tag`` first)."""
    duration_ms = round(duration * 1000)
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _full_box(
        b"mvhd",
        0,
        struct.pack(">IIII", 0, 0, 1000, duration_ms)
        + struct.pack(">IH2x8x", 0x10000, 0x100)
        + matrix
        + bytes(24)
        + struct.pack(">I", 2),
    )
    moov = _box(b"moov", mvhd + _video_track(duration_ms, width, height))
    pattern = bytes(range(256))
    mdat = _box(b"mdat", tag + (pattern * (payload_size // 256 + 1))[:payload_size])
    return ftyp + moov + mdat


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def mp4_duration(data: bytes) -> float | None:
    """Read the movie duration in seconds from moov/mvhd; ``None`` if the file has none."""
    top = list(_boxes(data, 0, len(data)))
    if not top or top[0][0] != b"ftyp":
        return None
    for kind, start, end in top:
        if kind != b"moov":
            continue
        for inner, body, stop in _boxes(data, start, end):
            if inner != b"mvhd" or stop - body < 20:
                continue
            if data[body] == 1:
                timescale, duration = struct.unpack_from(">IQ", data, body + 20)
            else:
                timescale, duration = struct.unpack_from(">II", data, body + 12)
            return duration / timescale if timescale else None
    return None


@lru_cache(maxsize=1)
def cover_jpeg() -> bytes:
    """A real JPEG used as every cover image."""
    buffer = io.BytesIO()
    Image.new("RGB", (320, 180), (40, 90, 160)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def sample_image(width: int = 64, height: int = 36, image_format: str = "PNG") -> bytes:
    """Make a small real image for requests in tests."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, format=image_format)
    return buffer.getvalue()


def _query_dict(query: MultiMapping[str]) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    for key, value in query.items():
        previous = out.get(key)
        if previous is None:
            out[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            out[key] = [previous, value]
    return out


async def _read_form(request: web.Request) -> dict[str, bytes | str]:
    # Reading parts ourselves keeps uploads in memory; request.post() spills files to temp files.
    form: dict[str, bytes | str] = {}
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is None:
            form[part.name] = await part.text()
        else:
            form[part.name] = bytes(await part.read())
    return form


class FakeProvider:
    """Base of the three fakes: an aiohttp app on loopback with recording and scripted faults."""

    outcome_kinds: ClassVar[frozenset[str]] = frozenset({"success", "failed", "moderation", "stall"})
    malformed_body: ClassVar[str] = '{"code": 0, "resu'
    media_seconds: ClassVar[float] = 5.0
    #: Listen backlog; the benchmark opens many connections at once.
    backlog: ClassVar[int] = 1024
    #: Seconds between two looks of the callback ticker at the clock.
    callback_tick: float = 0.05

    def __init__(
        self,
        *,
        api_key: str,
        prefix: str = "",
        clock: Clock = time.monotonic,
        queue_seconds: float = 0.05,
        run_seconds: float = 0.3,
        video_bytes: bytes | None = None,
        record: bool = True,
        outcome_rule: Callable[[dict[str, Any]], Outcome | None] | None = None,
        tag_media: bool = False,
    ) -> None:
        self.api_key = api_key
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.clock = clock
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.video_bytes = video_bytes
        self.record = record
        #: Picks a task's outcome from its request body (None: the next scripted outcome, else success).
        self.outcome_rule = outcome_rule
        #: Write each task's id into its video, so a test can tell whose video was delivered.
        self.tag_media = tag_media
        #: Seconds every answer takes on its way back, as over a real network: the work is done (a task
        #: created, a status read) before the wait, so a client that dies meanwhile leaves it done.
        self.answer_delay = 0.0
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[Any, Task] = {}
        self.outcomes = OutcomeQueue(self.outcome_kinds)
        self._counts: Counter[str] = Counter()
        self._faults: dict[str, deque[_QueuedFault]] = {}
        self._routes: list[tuple[str, str, str, Handler, bool]] = []
        #: Appended to every media URL, e.g. a long signature as on real object stores.
        self.media_query = ""
        #: When set, media URLs answer 404, as an expired or removed link does.
        self.media_expired = False
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._landing: set[asyncio.Task[web.StreamResponse]] = set()
        self._base_url = ""
        #: When set, due callbacks are not sent; each is counted under ``callback_count["dropped"]``.
        self.drop_callbacks = False
        #: Every try at a callback, oldest first (kept only when ``record`` is on).
        self.callbacks_sent: list[SentCallback] = []
        self.callbacks_dropped: list[DroppedCallback] = []
        #: Tries sent by event name, plus ``dropped``; kept even when ``record`` is off.
        self.callback_count: Counter[str] = Counter()
        # Due callbacks by (moment, sequence): the ticker pops what is due, O(log n) per event.
        self._callbacks_due: list[tuple[float, int, CallbackDue]] = []
        self._callback_sequence = itertools.count()
        self._callback_sends: set[asyncio.Future[None]] = set()
        # The latest send per task: a task's callbacks go out one after the other, in the order they happened.
        self._callback_chains: dict[Any, asyncio.Future[None]] = {}
        self._callbacks_changed = asyncio.Event()
        self._callback_errors: list[BaseException] = []
        self._callback_session: aiohttp.ClientSession | None = None
        #: The loopback address callbacks are sent from (None: the system's choice). Each real provider calls
        #: back from its own servers, and the bot's listener limits each source address on its own.
        self.callback_source: str | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._route("GET", "/media/{name}", "media", self._media, auth=False)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind to 127.0.0.1 on a free port and start serving."""
        if self._runner is not None:
            raise RuntimeError("fake already started")
        app = web.Application(client_max_size=MAX_BODY)
        for method, path, name, handler, auth in self._routes:
            endpoint = self._endpoint(name, handler, auth=auth)
            if method == "GET":
                app.router.add_get(self.prefix + path, endpoint)
            else:
                app.router.add_route(method, self.prefix + path, endpoint)
        app.router.add_route("*", "/{tail:.*}", self._endpoint("unknown", self._unknown, auth=False))
        # handler_cancellation: a client that gives up (timeout) also stops a hung handler.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=self.backlog)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self._base_url = f"http://127.0.0.1:{port}{self.prefix}"
        connector = aiohttp.TCPConnector(local_addr=(self.callback_source, 0)) if self.callback_source else None
        self._callback_session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=CALLBACK_TRY_SECONDS)
        )
        self._ticker = asyncio.create_task(self._tick_callbacks())

    async def close(self) -> None:
        """Stop the callback ticker and the sends in flight, release hung handlers and stop the server."""
        self._closing.set()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        sends = list(self._callback_sends)
        for send in sends:
            send.cancel()
        await asyncio.gather(*sends, return_exceptions=True)
        if self._callback_session is not None:
            session, self._callback_session = self._callback_session, None
            await session.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        """Root URL including the prefix, without a trailing slash."""
        if not self._base_url:
            raise RuntimeError("fake not started; use `async with`")
        return self._base_url

    def media_url(self, name: str) -> str:
        """Absolute URL of a media file served by this fake."""
        return f"{self.base_url}/media/{name}{self.media_query}"

    # -- test controls ---------------------------------------------------------------------

    @property
    def route_names(self) -> frozenset[str]:
        """Names accepted by :meth:`fail` and :meth:`route_count`."""
        return frozenset(name for _, _, name, _, _ in self._routes)

    def route_count(self, route: str) -> int:
        """How many requests hit ``route`` (counted even when recording is off)."""
        return self._counts[route]

    def requests_for(self, route: str) -> list[RecordedRequest]:
        """The recorded requests of one route, oldest first."""
        return [recorded for recorded in self.requests if recorded.route == route]

    def fail(self, route: str, kind: str, times: int = 1, **params: Any) -> None:
        """Answer the next ``times`` requests to ``route`` with fault ``kind``."""
        if route not in self.route_names:
            raise ValueError(f"unknown route {route!r}; known: {sorted(self.route_names)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        unexpected = set(params) - FAULT_PARAMS[kind]
        if unexpected:
            raise TypeError(f"fault {kind!r} takes no parameter(s) {sorted(unexpected)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.setdefault(route, deque()).append(_QueuedFault(Fault(kind, dict(params)), times))

    def phase(self, task_id: Any) -> str:
        """A task's generic phase now: waiting, processing, cancelled or its outcome kind."""
        now = self.clock()
        self._refresh(now)
        return self.tasks[task_id].phase(now)

    def native_status(self, task_id: Any) -> Any:
        """A task's status now, as the provider's query endpoint would report it."""
        now = self.clock()
        self._refresh(now)
        return self._native_status(self.tasks[task_id], now)

    def pending_faults(self, route: str | None = None) -> int:
        """How many queued fault answers are still unused (for one route or all)."""
        queues = [self._faults.get(route, deque())] if route else list(self._faults.values())
        return sum(entry.remaining for queue in queues for entry in queue)

    async def callbacks_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until no callback is in flight or due by the clock's current reading."""
        async with asyncio.timeout(timeout):
            while True:
                if self._callback_errors:
                    raise self._callback_errors[0]
                now = self.clock()
                self._refresh(now)
                due = bool(self._callbacks_due) and self._callbacks_due[0][0] <= now
                if not due and not self._callback_sends:
                    return
                await self._callbacks_changed.wait()

    # -- callbacks -------------------------------------------------------------------------

    def _schedule_callback(self, task: Task, moment: float, event: str, url: str) -> None:
        """Send a callback for ``event`` once the clock reaches ``moment`` (never for an infinite moment)."""
        if math.isinf(moment):
            return
        due = CallbackDue(task=task, event=event, url=url, moment=moment)
        heapq.heappush(self._callbacks_due, (moment, next(self._callback_sequence), due))
        self._signal_callbacks()

    def _signal_callbacks(self) -> None:
        self._callbacks_changed.set()
        self._callbacks_changed = asyncio.Event()

    async def _tick_callbacks(self) -> None:
        while True:
            await asyncio.sleep(self.callback_tick)
            self._fire_due_callbacks()

    def _fire_due_callbacks(self) -> None:
        now = self.clock()
        self._refresh(now)
        due = self._callbacks_due
        if not due or due[0][0] > now:
            return
        while due and due[0][0] <= now:
            _, _, callback = heapq.heappop(due)
            self._dispatch_callback(callback, now)
        self._signal_callbacks()

    def _dispatch_callback(self, callback: CallbackDue, now: float) -> None:
        url = self._callback_target(callback)
        if url is None:
            return
        task_id = callback.task.task_id
        if self.drop_callbacks:
            self.callback_count["dropped"] += 1
            if self.record:
                self.callbacks_dropped.append(DroppedCallback(url, callback.event, task_id, now))
            return
        if callback.body is None:
            callback.body = self._callback_body(callback)
        previous = self._callback_chains.get(task_id)
        send = asyncio.ensure_future(self._send_callback(callback, url, previous))
        self._callback_sends.add(send)
        self._callback_chains[task_id] = send
        send.add_done_callback(partial(self._callback_done, task_id))

    def _callback_done(self, task_id: Any, send: asyncio.Future[None]) -> None:
        self._callback_sends.discard(send)
        if self._callback_chains.get(task_id) is send:
            del self._callback_chains[task_id]
        error = None if send.cancelled() else send.exception()
        if error is not None:
            # A bug in the fake: callbacks_idle raises it, so the test that hit it fails.
            self._callback_errors.append(error)
        self._signal_callbacks()

    async def _send_callback(self, callback: CallbackDue, url: str, previous: asyncio.Future[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        session = self._callback_session
        if session is None:
            return
        body = callback.body or b""
        at = self.clock()
        headers = self._callback_headers(callback, url, body)
        status: int | None = None
        try:
            async with session.post(URL(url, encoded=True), data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        self.callback_count[callback.event] += 1
        if self.record:
            self.callbacks_sent.append(
                SentCallback(url, body, headers, status, callback.attempt, callback.event, callback.task.task_id, at)
            )
        if status == 200:
            task = callback.task
            if task.reported_final_at is None and task.phase(callback.moment) not in ("waiting", "processing"):
                task.reported_final_at = at
            return
        delays = self._callback_retry_delays(callback)
        if callback.attempt <= len(delays):
            delay = delays[callback.attempt - 1]
            callback.attempt += 1
            heapq.heappush(self._callbacks_due, (self.clock() + delay, next(self._callback_sequence), callback))

    def _callback_target(self, callback: CallbackDue) -> str | None:
        """Where a due callback goes now (None: nowhere, e.g. an account webhook that is not set)."""
        return callback.url

    def _callback_body(self, callback: CallbackDue) -> bytes:
        raise NotImplementedError

    def _callback_headers(self, callback: CallbackDue, url: str, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def _callback_retry_delays(self, callback: CallbackDue) -> Sequence[float]:
        """Seconds before each retry after a try that did not get HTTP 200 (empty: no retry)."""
        return ()

    # -- request plumbing ------------------------------------------------------------------

    def _route(self, method: str, path: str, name: str, handler: Handler, *, auth: bool = True) -> None:
        self._routes.append((method, path, name, handler, auth))

    def _endpoint(
        self, name: str, handler: Handler, *, auth: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, name, handler, auth=auth)

        return endpoint

    async def _serve(self, request: web.Request, route: str, handler: Handler, *, auth: bool) -> web.StreamResponse:
        call = await self._receive(request, route)
        if auth:
            if not self._authorized(request):
                return self._unauthorized(call)
            refusal = self._precheck(call)
            if refusal is not None:
                return refusal
        fault = self._take_fault(route)
        if fault is None:
            response = await handler(call)
            if self.answer_delay > 0:
                await self._pause(self.answer_delay)
            return response
        if fault.kind == "hang":
            seconds = float(fault.get("seconds", 30.0))
            if fault.get("after", False):
                response = await handler(call)
                await self._pause(seconds)
                return response
            if fault.get("lands_late", False):
                # The provider carries the request out after ``seconds`` even when the client stopped waiting.
                landing = asyncio.ensure_future(self._land_late(handler, call, seconds))
                self._landing.add(landing)
                landing.add_done_callback(self._landing.discard)
                return await asyncio.shield(landing)
            await self._pause(seconds)
            return await handler(call)
        if fault.kind == "unauthorized":
            return self._unauthorized(call)
        if fault.kind == "malformed":
            body = str(fault.get("body", self.malformed_body))
            return web.Response(status=200, text=body, content_type="application/json")
        if fault.kind == "server_error" and "body" in fault.params:
            return plain_response(int(fault.get("status", 500)), str(fault.params["body"]))
        return self._render_fault(call, fault)

    async def _land_late(self, handler: Handler, call: Call, seconds: float) -> web.StreamResponse:
        await self._pause(seconds)
        return await handler(call)

    async def _receive(self, request: web.Request, route: str) -> Call:
        at = self.clock()
        raw = b""
        body: Any = None
        form: dict[str, bytes | str] | None = None
        if request.content_type.startswith("multipart/"):
            try:
                form = await _read_form(request)
            except ValueError:
                form = {}
        elif request.body_exists:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = INVALID
        self._counts[route] += 1
        if self.record:
            path = request.path
            if self.prefix and path.startswith(self.prefix):
                path = path[len(self.prefix) :] or "/"
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=path,
                    query=_query_dict(request.query),
                    headers=request.headers,
                    json=None if body is INVALID else body,
                    form=form,
                    route=route,
                    at=at,
                )
            )
        return Call(request=request, route=route, at=at, raw=raw, body=body, form=form)

    def _take_fault(self, route: str) -> Fault | None:
        queue = self._faults.get(route)
        if not queue:
            return None
        entry = queue[0]
        entry.remaining -= 1
        if entry.remaining <= 0:
            queue.popleft()
        return entry.fault

    async def _pause(self, seconds: float) -> None:
        # Waiting on the closing event lets close() release hung handlers at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _create_task(
        self,
        task_id: Any,
        body: dict[str, Any],
        *,
        wait: float | None = None,
        scheduled: bool = True,
        info: dict[str, Any] | None = None,
    ) -> Task:
        """Create and store a task using the next scripted outcome."""
        outcome = self.outcome_rule(body) if self.outcome_rule is not None else None
        if outcome is None:
            outcome = self.outcomes.popleft() if self.outcomes else Outcome()
        now = self.clock()
        if outcome.queue_seconds is not None:
            wait = outcome.queue_seconds
        elif wait is None:
            wait = self.queue_seconds
        run = outcome.run_seconds if outcome.run_seconds is not None else self.run_seconds
        task = Task(
            task_id=task_id,
            created_at=now,
            created_wall=datetime.now(UTC),
            outcome=outcome,
            body=body,
            ready_at=now + wait,
            run_seconds=run,
            start_at=now + wait if scheduled else None,
            info=info or {},
        )
        self.tasks[task_id] = task
        return task

    # -- media -----------------------------------------------------------------------------

    def _task_for_media(self, stem: str) -> Task | None:
        return self.tasks.get(stem)

    def _media_payload(self, name: str) -> tuple[bytes, str] | None:
        stem, dot, extension = name.rpartition(".")
        if not dot:
            return None
        if extension == "mp4":
            stem = stem.removesuffix("_wm")
        elif extension != "jpg":
            return None
        now = self.clock()
        self._refresh(now)
        task = self._task_for_media(stem)
        if task is None or task.phase(now) != "success":
            return None
        if extension == "jpg":
            return cover_jpeg(), "image/jpeg"
        if self.video_bytes is not None:
            return self.video_bytes, "video/mp4"
        duration = float(task.info.get("duration", self.media_seconds))
        width, height = int(task.info.get("width", 1280)), int(task.info.get("height", 720))
        tag = f"task:{task.task_id};".encode() if self.tag_media else b""
        return build_mp4(duration, width=width, height=height, tag=tag), "video/mp4"

    async def _media(self, call: Call) -> web.StreamResponse:
        payload = None if self.media_expired else self._media_payload(call.request.match_info["name"])
        if payload is None:
            return plain_response(404)
        data, content_type = payload
        return web.Response(body=data, content_type=content_type)

    async def _unknown(self, call: Call) -> web.StreamResponse:
        return plain_response(404)

    # -- provider hooks --------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        raise NotImplementedError

    def _unauthorized(self, call: Call) -> web.Response:
        raise NotImplementedError

    def _reported(self, task: Task, now: float) -> None:
        """Note the first status answer that tells a client ``task`` has ended."""
        if task.reported_final_at is None and task.phase(now) not in ("waiting", "processing"):
            task.reported_final_at = now

    def _refresh(self, now: float) -> None:
        """Bring lazily computed scheduling up to ``now`` (only Vidu queues tasks)."""

    def _native_status(self, task: Task, now: float) -> Any:
        raise NotImplementedError

    def _precheck(self, call: Call) -> web.Response | None:
        """Gateway-level checks run after auth and before faults."""
        return None

    def _render_fault(self, call: Call, fault: Fault) -> web.Response:
        raise NotImplementedError

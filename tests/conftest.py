"""Shared fixtures: a client session, the fake provider servers, and clients pointed at them."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from PIL import Image
from pydantic import SecretStr

from bot.store import Store
from providers import GenerationRequest, Operation, TaskRef, TaskStatus, VideoProvider
from providers.hidream import HiDream
from providers.http import RetryPolicy
from providers.pixverse import PixVerse
from providers.vidu import Vidu
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu
from tests.postgres import NoPostgres, PostgresServer

P = TypeVar("P", bound=VideoProvider)
HIDREAM_KEY = "hd-test-key-0123456789"
PIXVERSE_KEY = "pv-test-key-0123456789"
VIDU_KEY = "vd-test-key-0123456789"
#: Short waits so retry tests stay fast; the policy's shape is what they exercise.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=5)


def image_bytes(width: int = 640, height: int = 360, fmt: str = "PNG", colour: str = "teal") -> bytes:
    """A real image made with Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@dataclass
class Harness:
    """One provider's fake server and a client pointed at it."""

    name: str
    fake: Any
    client: VideoProvider
    key: str
    #: Route names in the fake for the job-creating request and the status query.
    submit_route: str
    poll_route: str
    #: Extra options the provider requires.
    required: dict[str, Any]
    #: Builds another client for the same fake, with other settings.
    make_client: Callable[..., VideoProvider]

    def request(self, **params: Any) -> GenerationRequest:
        media = self.client.prepare_media(Operation.IMAGE_TO_VIDEO, image_bytes())
        return GenerationRequest(Operation.IMAGE_TO_VIDEO, {**self.required, **params}, media)

    async def wait_until(
        self, task: TaskRef, done: Callable[[TaskStatus], bool], within: float = 5.0
    ) -> list[TaskStatus]:
        """Poll until ``done``; returns every status seen."""
        return await poll_until(self.client, task, done, within)


async def poll_until(
    client: VideoProvider, task: TaskRef, done: Callable[[TaskStatus], bool], within: float = 5.0
) -> list[TaskStatus]:
    seen: list[TaskStatus] = []
    async with asyncio.timeout(within):
        while True:
            [status] = await client.poll([task])
            seen.append(status)
            if done(status):
                return seen
            await asyncio.sleep(0.03)


def _client(cls: type[P], default_key: str, session: aiohttp.ClientSession, fake: Any, **kwargs: Any) -> P:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("base_url", fake.base_url)
    return cls(session, SecretStr(kwargs.pop("key", default_key)), **kwargs)


def hidream_client(session: aiohttp.ClientSession, fake: FakeHiDream, **kwargs: Any) -> HiDream:
    return _client(HiDream, HIDREAM_KEY, session, fake, **kwargs)


def pixverse_client(session: aiohttp.ClientSession, fake: FakePixVerse, **kwargs: Any) -> PixVerse:
    return _client(PixVerse, PIXVERSE_KEY, session, fake, **kwargs)


def vidu_client(session: aiohttp.ClientSession, fake: FakeVidu, **kwargs: Any) -> Vidu:
    return _client(Vidu, VIDU_KEY, session, fake, **kwargs)


@pytest.fixture
async def hidream_fake() -> AsyncIterator[FakeHiDream]:
    async with FakeHiDream(api_key=HIDREAM_KEY) as fake:
        yield fake


@pytest.fixture
async def pixverse_fake() -> AsyncIterator[FakePixVerse]:
    async with FakePixVerse(api_key=PIXVERSE_KEY) as fake:
        yield fake


@pytest.fixture
async def vidu_fake() -> AsyncIterator[FakeVidu]:
    async with FakeVidu(api_key=VIDU_KEY) as fake:
        yield fake


@pytest.fixture
def hidream(session: aiohttp.ClientSession, hidream_fake: FakeHiDream) -> HiDream:
    return hidream_client(session, hidream_fake)


@pytest.fixture
def pixverse(session: aiohttp.ClientSession, pixverse_fake: FakePixVerse) -> PixVerse:
    return pixverse_client(session, pixverse_fake)


@pytest.fixture
def vidu(session: aiohttp.ClientSession, vidu_fake: FakeVidu) -> Vidu:
    return vidu_client(session, vidu_fake)


@pytest.fixture(params=["hidream", "pixverse", "vidu"])
async def harness(request: pytest.FixtureRequest, session: aiohttp.ClientSession) -> AsyncIterator[Harness]:
    """Each provider in turn, for the behaviour they all share."""
    name = request.param
    if name == "hidream":
        async with FakeHiDream(api_key=HIDREAM_KEY) as hd:
            yield Harness(
                name,
                hd,
                hidream_client(session, hd),
                HIDREAM_KEY,
                "submit_img2video",
                "batch_query",
                {},
                lambda **kw: hidream_client(session, hd, **kw),
            )
    elif name == "pixverse":
        async with FakePixVerse(api_key=PIXVERSE_KEY) as pv:
            yield Harness(
                name,
                pv,
                pixverse_client(session, pv),
                PIXVERSE_KEY,
                "generate",
                "result",
                {"prompt": "a wave"},
                lambda **kw: pixverse_client(session, pv, **kw),
            )
    else:
        async with FakeVidu(api_key=VIDU_KEY) as vd:
            yield Harness(
                name,
                vd,
                vidu_client(session, vd),
                VIDU_KEY,
                "create",
                "creations",
                {"prompt": "a wave"},
                lambda **kw: vidu_client(session, vd, **kw),
            )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole run, started only if a test asks for it.

    Without one, the PostgreSQL tests are skipped on a developer's machine and fail under CI.
    """
    try:
        server = PostgresServer.start()
    except NoPostgres as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped after the test."""
    url = await postgres_server.create_database()
    yield url
    await postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's ledger lives: a SQLite file, then a fresh database on the test PostgreSQL server."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return tmp_path / "data" / "jobs.db"


class LedgerClock:
    """A ledger's clock that a test sets by hand (``clock.current = ...``)."""

    def __init__(self) -> None:
        self.current = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.current


@pytest.fixture
def clock() -> LedgerClock:
    return LedgerClock()


@pytest.fixture
async def store(ledger: Path | str, clock: LedgerClock) -> AsyncIterator[Store]:
    """The ledger (both dialects) on the hand-set clock."""
    opened = await Store.open(ledger, now=clock)
    yield opened
    await opened.close()

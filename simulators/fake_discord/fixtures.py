"""pytest fixtures; import them into a conftest (``from simulators.fake_discord.fixtures import fake_discord``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .server import FakeDiscord


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord with the default world, closed after the test."""
    async with FakeDiscord() as fake:
        yield fake

"""A fake Discord (REST, gateway, CDN) on loopback for end-to-end tests of the real discord.py client.

Typical use::

    async with FakeDiscord() as fake, connect_client(fake, MyBot(guild_ready_timeout=0.1)) as bot:
        record = await fake.push_interaction(fake.slash("animate", subcommand="vidu", options={...}))
        ...
        assert fake.original(record).embeds[0]["title"] == "Queued"
"""

from .client import connect_client, patch_discord, worker_client
from .clock import Clock, Snowflakes
from .gateway import GatewayFrame, GatewaySession
from .interactions import infer_option_type
from .models import (
    EPHEMERAL,
    LOADING,
    CallbackRecord,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    InteractionRecord,
    RecordedRequest,
    StoredAttachment,
    UploadedFile,
)
from .ratelimit import Limit, RateLimits
from .server import ApiError, CommandSync, FakeDiscord

__all__ = [
    "EPHEMERAL",
    "LOADING",
    "ApiError",
    "CallbackRecord",
    "Clock",
    "CommandSync",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "GatewayFrame",
    "GatewaySession",
    "InteractionRecord",
    "Limit",
    "RateLimits",
    "RecordedRequest",
    "Snowflakes",
    "StoredAttachment",
    "UploadedFile",
    "connect_client",
    "infer_option_type",
    "patch_discord",
    "worker_client",
]

"""The fake gateway: sessions, sequence numbers, replay on RESUME, and text JSON frames."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
RESUME = 6
RECONNECT = 7
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

GUILD_MEMBERS = 1 << 1
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12


@dataclass(eq=False)
class GatewayFrame:
    """One frame either way: ``direction`` is ``"in"`` (from the client) or ``"out"``."""

    direction: str
    op: int | None
    t: str | None
    s: int | None
    d: Any
    at: float


class Connection:
    """One websocket; sends are serialised so frames never interleave."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.session: GatewaySession | None = None
        self._lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        """Whether frames can still be sent."""
        return not self.ws.closed

    async def send(self, frame: dict[str, Any]) -> bool:
        """Send a text frame; False if the socket is already gone."""
        async with self._lock:
            if self.ws.closed:
                return False
            try:
                await self.ws.send_str(json.dumps(frame, separators=(",", ":")))
            except (ConnectionError, RuntimeError):
                return False
            return True

    async def close(self, code: int, message: bytes = b"") -> None:
        """Close the socket with a close code."""
        if not self.ws.closed:
            await self.ws.close(code=code, message=message)


@dataclass(eq=False)
class GatewaySession:
    """An identified session: its events keep their sequence numbers so a RESUME can replay them."""

    session_id: str
    token: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    connection: Connection | None = None
    invalidated: bool = False

    @classmethod
    def new(cls, token: str, intents: int, shard: list[int] | None) -> GatewaySession:
        """A session with a random id."""
        return cls(session_id=secrets.token_hex(16), token=token, intents=intents, shard=shard)

    def frame(self, event: str, data: Any) -> dict[str, Any]:
        """Number and keep a dispatch."""
        self.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.events.append(frame)
        if len(self.events) > 1000:
            del self.events[:-1000]
        return frame

    @property
    def shard_id(self) -> int:
        """The shard this session serves; a session identified without a shard is shard 0 of 1."""
        return self.shard[0] if self.shard else 0

    def missed_since(self, seq: int | None) -> list[dict[str, Any]]:
        """Events after ``seq``, for a RESUME."""
        return [frame for frame in self.events if frame["s"] > (seq or 0)]

    def wants(self, intent: int) -> bool:
        """Whether the session asked for an intent."""
        return bool(self.intents & intent)

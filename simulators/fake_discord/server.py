"""FakeDiscord: REST under /api/v10, a websocket gateway and a signed-URL CDN on one loopback aiohttp app."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Self
from urllib.parse import quote, urlsplit

from aiohttp import BodyPartReader, WSMsgType, web

from .clock import Clock, Snowflakes
from .gateway import (
    DIRECT_MESSAGES,
    GUILD_MEMBERS,
    GUILD_MESSAGES,
    HEARTBEAT,
    HEARTBEAT_ACK,
    HELLO,
    IDENTIFY,
    INVALID_SESSION,
    RECONNECT,
    RESUME,
    Connection,
    GatewayFrame,
    GatewaySession,
)
from .interactions import InteractionBuilders
from .models import (
    EPHEMERAL,
    EVERYONE_PERMISSIONS,
    LOADING,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
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
from .ratelimit import Bucket, RateLimiter, RateLimits, Verdict

MIB: Final = 1024 * 1024
DEFAULT_UPLOAD_LIMIT: Final = 10 * MIB
MAX_REQUEST_BODY: Final = 512 * MIB
#: A link button's url is at most 512 characters (developers/components/reference).
MAX_BUTTON_URL: Final = 512
INTERACTION_RESPONSE_WINDOW: Final = 3.0
NONCE_WINDOW: Final = 5 * 60.0
CDN_TTL: Final = 24 * 3600.0
IS_COMPONENTS_V2: Final = 1 << 15
RESPONSE_FLAGS: Final = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
# Callback types each interaction type accepts (1 ping, 2 command, 3 component, 4 autocomplete, 5 modal submit).
ALLOWED_CALLBACKS: Final[dict[int, frozenset[int]]] = {
    1: frozenset({1}),
    2: frozenset({4, 5, 9, 12}),
    3: frozenset({4, 5, 6, 7, 9, 12}),
    4: frozenset({8}),
    5: frozenset({4, 5, 6, 7, 12}),
}
COMMAND_NAME: Final = re.compile(r"^[-_'\w]{1,32}$")
#: The locales Discord accepts as keys of name_localizations and description_localizations.
LOCALES: Final = frozenset(
    {
        *("id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl", "no", "pl"),
        *("pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th", "zh-CN", "ja", "zh-TW"),
        "ko",
    }
)


class ApiError(Exception):
    """A Discord-style error reply: ``{"message": ..., "code": ...}`` (plus ``errors`` for form errors)."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def unknown_message() -> ApiError:
    """404 10008."""
    return ApiError(404, 10008, "Unknown Message")


def invalid_form(errors: dict[str, Any]) -> ApiError:
    """400 50035 with the nested ``errors`` object."""
    return ApiError(400, 50035, "Invalid Form Body", errors)


@dataclass(slots=True)
class Reply:
    """A handler's answer; ``body=None`` sends no body (204)."""

    status: int = 200
    body: Any = None


@dataclass(slots=True)
class Call:
    """A matched API request."""

    request: web.Request
    record: RecordedRequest
    params: dict[str, str]
    json: Any
    files: list[UploadedFile]

    def body(self) -> dict[str, Any]:
        """The JSON object body (empty if none)."""
        return self.json if isinstance(self.json, dict) else {}

    def query_flag(self, name: str) -> bool:
        """A boolean query parameter as Discord reads it."""
        return self.record.query.get(name, "").lower() in {"1", "true"}


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: str
    """``"bot"``: needs the bot token and counts against the global limit; ``"none"``: webhook-style."""


@dataclass(eq=False)
class _Waiter:
    predicate: Callable[[RecordedRequest], bool]
    future: asyncio.Future[RecordedRequest]


@dataclass
class CommandSync:
    """One bulk overwrite of application commands (``guild_id`` None for global)."""

    guild_id: int | None
    payload: list[dict[str, Any]]
    at: float


@dataclass
class _Drop:
    method: str
    pattern: re.Pattern[str]
    remaining: int
    after: bool = False


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int


@dataclass
class _World:
    users: dict[int, FakeUser] = field(default_factory=dict)
    guilds: dict[int, FakeGuild] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)


def _error_at(errors: dict[str, Any], path: Iterable[str | int], code: str, message: str) -> None:
    node = errors
    for part in path:
        node = node.setdefault(str(part), {})
    node.setdefault("_errors", []).append({"code": code, "message": message})


class FakeDiscord(InteractionBuilders):
    """An in-process Discord for discord.py: start it, point discord.py at it, push interactions, assert.

    The default world has one guild (``fake.guild``) with a text channel ``#general`` (``fake.channel``),
    its owner (``fake.owner``), a member ``alice`` (``fake.user``) and the bot (``fake.bot_user``).
    """

    def __init__(
        self,
        token: str = "fake-bot-token",  # noqa: S107
        *,
        limits: RateLimits | None = None,
        clock: Clock | None = None,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        heartbeat_interval: int = 41250,
        message_events: bool = True,
        bot_name: str = "Animator",
        shard_count: int = 1,
    ) -> None:
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        self.token = token
        self.shard_count = shard_count
        self.limits = limits or RateLimits()
        self.clock = clock or Clock()
        self.snowflakes = Snowflakes(self.clock)
        self.upload_limit = upload_limit
        self.heartbeat_interval = heartbeat_interval
        self.message_events = message_events
        self.app_flags = 0
        self.verify_key = secrets.token_hex(32)
        self._cdn_secret = secrets.token_bytes(32)

        self.requests: list[RecordedRequest] = []
        self.unknown_requests: list[RecordedRequest] = []
        self.rate_limited: list[RecordedRequest] = []
        self.invalid_requests: list[RecordedRequest] = []
        self.cdn_requests: list[RecordedRequest] = []
        self.gateway_log: list[GatewayFrame] = []
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.syncs: list[CommandSync] = []
        self.interactions: dict[int, InteractionRecord] = {}

        self._limiter = RateLimiter(self.limits)
        self._world = _World()
        self._messages: dict[int, FakeMessage] = {}
        self._attachments: dict[int, StoredAttachment] = {}
        self._cdn_gate: asyncio.Event | None = None
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._command_ids: dict[tuple[int | None, str], int] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._nonces: dict[tuple[int, str], tuple[int, float]] = {}
        self._drops: list[_Drop] = []
        self._failures: list[_Failure] = []
        self._dm_channels: dict[int, FakeChannel] = {}
        self._routes: list[_Route] = []
        self._waiters: list[_Waiter] = []
        self._connections: set[Connection] = set()
        self._sessions: dict[int, GatewaySession] = {}
        self._shards_ready: dict[int, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        self._base_url = ""

        self.app_id = self.snowflakes.next()
        self.bot_user = self.add_user(bot_name, bot=True, user_id=self.app_id)
        self.owner = self.add_user("owner", global_name="Guild Owner")
        self.user = self.add_user("alice", global_name="Alice")
        self.guild = self.add_guild("Test Guild", owner=self.owner, members=[self.user])
        self.channel = self.guild.channels[0]
        self._register_routes()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Serve on 127.0.0.1 on a free port."""
        if self._runner is not None:
            raise RuntimeError("FakeDiscord already started")
        app = web.Application(client_max_size=MAX_REQUEST_BODY)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle_api)
        app.router.add_get("/gateway", self._handle_gateway)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._handle_cdn)
        app.router.add_get("/proxy/attachments/{channel_id}/{attachment_id}/{filename}", self._handle_cdn)
        app.router.add_route("*", "/{tail:.*}", self._handle_stray)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self._base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Close gateway sockets and stop serving."""
        for connection in list(self._connections):
            await connection.close(1001)
        for waiter in self._waiters:
            waiter.future.cancel()
        self._waiters.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if not self._base_url:
            raise RuntimeError("FakeDiscord is not started")
        return self._base_url

    @property
    def api_url(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be set to (also the ``resume_gateway_url``)."""
        return "ws" + self.base_url.removeprefix("http") + "/gateway"

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        """The fake clock's reading."""
        return self.clock.now()

    def advance(self, seconds: float) -> float:
        """Move the fake clock forward (expire tokens, age messages, end rate-limit windows)."""
        return self.clock.advance(seconds)

    # ------------------------------------------------------------------ world

    def add_user(
        self, username: str, *, global_name: str | None = None, bot: bool = False, user_id: int | None = None
    ) -> FakeUser:
        """A new user (not in any guild)."""
        user = FakeUser(id=user_id or self.snowflakes.next(), username=username, global_name=global_name, bot=bot)
        self._world.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        owner: FakeUser | None = None,
        members: Iterable[FakeUser] = (),
        channels: Iterable[str] = ("general",),
        bot_joined: bool = True,
        everyone_permissions: int = EVERYONE_PERMISSIONS,
        premium_tier: int = 0,
        shard: int | None = None,
        preferred_locale: str = "en-US",
        community: bool = False,
    ) -> FakeGuild:
        """A guild with an @everyone role, text channels and members (the bot joins unless ``bot_joined=False``).

        ``preferred_locale`` is what the server chose; interactions report it only for a ``community`` server.

        ``shard`` picks an id that Discord would route to that shard of ``shard_count``.
        """
        if shard is None:
            guild_id = self.snowflakes.next()
        elif 0 <= shard < self.shard_count:
            guild_id = self.snowflakes.next_on_shard(shard, self.shard_count)
        else:
            raise ValueError(f"shard {shard} is not one of the {self.shard_count} shards")
        owner = owner or self.owner
        guild = FakeGuild(
            id=guild_id,
            name=name,
            owner_id=owner.id,
            bot_joined=bot_joined,
            premium_tier=premium_tier,
            preferred_locale=preferred_locale,
            community=community,
            created_at=self.now(),
        )
        guild.roles.append(FakeRole(id=guild_id, name="@everyone", permissions=everyone_permissions))
        self._world.guilds[guild_id] = guild
        for user in [owner, *members]:
            self.add_member(guild, user)
        if bot_joined:
            self.add_member(guild, self.bot_user)
        for channel_name in channels:
            self.add_channel(guild, channel_name)
        return guild

    def add_channel(
        self,
        guild: FakeGuild | int,
        name: str,
        *,
        type: int = 0,
        topic: str | None = None,
        parent_id: int | None = None,
    ) -> FakeChannel:
        """A channel in a guild."""
        owner = self._guild(guild)
        channel = FakeChannel(
            id=self.snowflakes.next(),
            name=name,
            type=type,
            guild_id=owner.id,
            position=len(owner.channels),
            topic=topic,
            parent_id=parent_id,
        )
        owner.channels.append(channel)
        self._world.channels[channel.id] = channel
        return channel

    def add_member(self, guild: FakeGuild | int, user: FakeUser, *, roles: Iterable[int] = ()) -> FakeMember:
        """Make a user a member of a guild."""
        owner = self._guild(guild)
        member = FakeMember(user=user, roles=list(roles), joined_at=self.now())
        owner.members[user.id] = member
        return member

    def add_role(self, guild: FakeGuild | int, name: str, permissions: int = 0) -> FakeRole:
        """A role in a guild."""
        owner = self._guild(guild)
        role = FakeRole(id=self.snowflakes.next(), name=name, permissions=permissions, position=len(owner.roles))
        owner.roles.append(role)
        return role

    def dm_channel(self, user: FakeUser | int) -> FakeChannel:
        """The bot's DM channel with a user (created on first use, like POST /users/@me/channels)."""
        target = self._user(user)
        channel = self._dm_channels.get(target.id)
        if channel is None:
            channel = FakeChannel(id=self.snowflakes.next(), name=None, type=1, recipients=[target])
            self._dm_channels[target.id] = channel
            self._world.channels[channel.id] = channel
        return channel

    def forbid(self, channel: FakeChannel | int, forbidden: bool = True) -> None:
        """Bot-token writes to the channel answer 403 50013 (interaction webhooks still work, as on Discord)."""
        self._channel(channel).forbidden = forbidden

    def allow(self, channel: FakeChannel | int) -> None:
        """Undo :meth:`forbid`."""
        self.forbid(channel, forbidden=False)

    def close_dms(self, user: FakeUser | int, closed: bool = True) -> None:
        """Messages to this user's DM channel answer 403 50007."""
        self._user(user).dm_closed = closed

    def get_user(self, user_id: int) -> FakeUser | None:
        """A user by id."""
        return self._world.users.get(user_id)

    def get_guild(self, guild_id: int) -> FakeGuild | None:
        """A guild by id."""
        return self._world.guilds.get(guild_id)

    def get_channel(self, channel_id: int) -> FakeChannel | None:
        """A channel by id."""
        return self._world.channels.get(channel_id)

    def _guild(self, guild: FakeGuild | int) -> FakeGuild:
        found = guild if isinstance(guild, FakeGuild) else self._world.guilds.get(int(guild))
        if found is None:
            raise KeyError(f"unknown guild {guild}")
        return found

    def _channel(self, channel: FakeChannel | int) -> FakeChannel:
        found = channel if isinstance(channel, FakeChannel) else self._world.channels.get(int(channel))
        if found is None:
            raise KeyError(f"unknown channel {channel}")
        return found

    def _user(self, user: FakeUser | int) -> FakeUser:
        found = user if isinstance(user, FakeUser) else self._world.users.get(int(user))
        if found is None:
            raise KeyError(f"unknown user {user}")
        return found

    # ------------------------------------------------------------------ payloads

    def member_payload(self, guild: FakeGuild, member: FakeMember, *, with_user: bool = True) -> dict[str, Any]:
        """A guild member object."""
        data: dict[str, Any] = {
            "roles": [str(role) for role in member.roles],
            "joined_at": self.clock.iso(member.joined_at),
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = member.user.payload()
        return data

    def guild_payload(self, guild: FakeGuild, *, full: bool = True, all_members: bool = True) -> dict[str, Any]:
        """The guild object; ``full`` adds what GUILD_CREATE carries (channels, members, ...).

        Without ``all_members`` (no GUILD_MEMBERS intent) only the bot's own member object is listed, as on Discord.
        """
        data: dict[str, Any] = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": guild.locale,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "application_id": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "features": guild.features,
            "roles": [role.payload() for role in guild.roles],
            "emojis": [],
            "stickers": [],
        }
        if full:
            data.update(
                joined_at=self.clock.iso(guild.created_at),
                large=False,
                unavailable=False,
                member_count=len(guild.members),
                members=[
                    self.member_payload(guild, member)
                    for member in guild.members.values()
                    if all_members or member.user.id == self.bot_user.id
                ],
                channels=[channel.payload() for channel in guild.channels],
                threads=[],
                voice_states=[],
                presences=[],
                stage_instances=[],
                guild_scheduled_events=[],
                soundboard_sounds=[],
            )
        return data

    def attachment_url(self, attachment: StoredAttachment, *, proxy: bool = False) -> str:
        """A signed CDN URL with ``ex``/``is``/``hm`` like Discord's."""
        expires, issued = int(attachment.expires_at), int(attachment.issued_at)
        prefix = "/proxy" if proxy else ""
        path = f"{prefix}/attachments/{attachment.channel_id}/{attachment.id}/{quote(attachment.filename)}"
        return f"{self.base_url}{path}?ex={expires:x}&is={issued:x}&hm={self._sign(attachment.id, expires, issued)}&"

    def _sign(self, attachment_id: int, expires: int, issued: int) -> str:
        message = f"{attachment_id}:{expires:x}:{issued:x}".encode()
        return hmac.new(self._cdn_secret, message, hashlib.sha256).hexdigest()

    def attachment_payload(self, attachment: StoredAttachment) -> dict[str, Any]:
        """The attachment object (what ``resolved.attachments`` and messages carry)."""
        data: dict[str, Any] = {
            "id": str(attachment.id),
            "filename": attachment.filename,
            "size": attachment.size,
            "url": self.attachment_url(attachment),
            "proxy_url": self.attachment_url(attachment, proxy=True),
            "content_type": attachment.content_type,
        }
        if attachment.width is not None and attachment.height is not None:
            data.update(width=attachment.width, height=attachment.height)
        if attachment.description is not None:
            data["description"] = attachment.description
        if attachment.ephemeral:
            data["ephemeral"] = True
        return data

    def message_payload(self, message: FakeMessage) -> dict[str, Any]:
        """The message object as the REST API returns it."""
        data: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "type": message.type,
            "content": message.content,
            "author": message.author.payload(),
            "timestamp": self.clock.iso(message.created_at),
            "edited_timestamp": None if message.edited_at is None else self.clock.iso(message.edited_at),
            "tts": message.tts,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [self.attachment_payload(attachment) for attachment in message.attachments],
            "embeds": [dict(embed) for embed in message.embeds],
            "components": json.loads(json.dumps(message.components)),
            "pinned": False,
            "flags": message.flags,
        }
        if message.nonce is not None:
            data["nonce"] = message.nonce
        if message.message_reference is not None:
            data["message_reference"] = {
                key: str(value) if key.endswith("_id") and value is not None else value
                for key, value in message.message_reference.items()
            }
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(self.app_id)
        record = self.interactions.get(message.interaction_id or 0)
        if record is not None:
            user = (record.payload.get("member") or {}).get("user") or record.payload.get("user")
            owners = record.payload.get("authorizing_integration_owners", {})
            metadata: dict[str, Any] = {
                "id": str(record.id),
                "type": record.type,
                "user": user,
                "authorizing_integration_owners": owners,
            }
            if record.message_id is not None:
                metadata["interacted_message_id"] = str(record.message_id)
            if record.original_id is not None and record.original_id != message.id:
                metadata["original_response_message_id"] = str(record.original_id)
            data["interaction_metadata"] = metadata
        return data

    # ------------------------------------------------------------------ queries for tests

    def messages(
        self, channel: FakeChannel | int | None = None, *, include_deleted: bool = False, include_ephemeral: bool = True
    ) -> list[FakeMessage]:
        """Stored messages (of one channel, or all), oldest first."""
        channel_id = None if channel is None else (channel.id if isinstance(channel, FakeChannel) else int(channel))
        return [
            message
            for message in sorted(self._messages.values(), key=lambda item: item.id)
            if (channel_id is None or message.channel_id == channel_id)
            and (include_deleted or not message.deleted)
            and (include_ephemeral or not message.ephemeral)
        ]

    def revoke_token(self, interaction: Any, *, status: int = 401, after: float = 0.0) -> None:
        """Make Discord stop honouring the interaction's token ``after`` seconds (fake clock) from now.

        Discord sometimes does this well inside the 15 minutes (discord/discord-api-docs#6851); the
        webhook endpoints then answer 401 50027 Invalid Webhook Token, or 404 10015 Unknown Webhook.
        """
        if status not in (401, 404):
            raise ValueError("a revoked token answers 401 or 404")
        record = self.interaction(interaction)
        record.revoked_at = self.now() + after
        record.revoked_status = status

    def failed_requests(self, interaction: Any = None) -> list[RecordedRequest]:
        """Requests answered with an error (4xx/5xx), all of them or those made with one interaction's token."""
        failed = [request for request in self.requests if request.kind == "api" and request.status >= 400]
        if interaction is None:
            return failed
        token = self.interaction(interaction).token
        return [request for request in failed if f"/{token}" in request.path]

    def drop_connection(self, method: str, path_regex: str, *, times: int = 1, after: bool = False) -> None:
        """Close the connection without answering the next ``times`` matching API requests (a network failure).

        With ``after``, Discord carries each request out first and only the answer is lost, so the client
        cannot tell whether it took effect.
        """
        self._drops.append(_Drop(method.upper(), re.compile(path_regex), times, after))

    def fail_requests(self, method: str, path_regex: str, *, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` matching API requests with a server error, as Discord does in an outage,
        or with a 429 (``status=429``), as Discord does when another process of the bot used up the bucket."""
        if not (500 <= status <= 599 or status == 429):
            raise ValueError("a scripted failure is a server error (5xx) or a rate limit (429)")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._failures.append(_Failure(method.upper(), re.compile(path_regex), status, times))

    def pending_failures(self) -> int:
        """How many scripted server errors are still to be answered."""
        return sum(failure.remaining for failure in self._failures)

    def _take_failure(self, method: str, path: str) -> int | None:
        for failure in self._failures:
            if failure.method == method and failure.pattern.search(path) and failure.remaining > 0:
                failure.remaining -= 1
                return failure.status
        return None

    def _take_drop(self, method: str, path: str, *, after: bool) -> bool:
        for drop in self._drops:
            if drop.method == method and drop.after is after and drop.pattern.search(path) and drop.remaining > 0:
                drop.remaining -= 1
                return True
        return False

    def hide_history(self, channel: FakeChannel | int, hidden: bool = True) -> None:
        """The bot lacks Read Message History there: reading the channel's messages answers an empty list."""
        self._channel(channel).history_hidden = hidden

    def message(self, message_id: int) -> FakeMessage | None:
        """A stored message by id (deleted ones too)."""
        return self._messages.get(int(message_id))

    def interaction(self, interaction: Any) -> InteractionRecord:
        """The record of a pushed interaction (accepts a record, an id, or anything with ``.id``)."""
        key = interaction.id if hasattr(interaction, "id") else int(interaction)
        return self.interactions[int(key)]

    def original(self, interaction: Any) -> FakeMessage | None:
        """The original response message of an interaction (for type 6/7 the component's message)."""
        record = self.interaction(interaction)
        return None if record.original_id is None else self._messages.get(record.original_id)

    def followups(self, interaction: Any) -> list[FakeMessage]:
        """Messages created through the interaction's followup webhook."""
        return [self._messages[message_id] for message_id in self.interaction(interaction).followup_ids]

    def callbacks(self, interaction: Any) -> list[CallbackRecord]:
        """Every callback attempt for an interaction, accepted or refused."""
        return list(self.interaction(interaction).callbacks)

    def requests_to(self, method: str | None, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests whose method matches (None: any) and whose path fully matches the regex."""
        pattern = re.compile(path_regex)
        return [
            record
            for record in self.requests
            if (method is None or record.method == method.upper()) and pattern.fullmatch(record.path)
        ]

    def commands(self, guild: FakeGuild | int | None = None) -> list[dict[str, Any]]:
        """The registered commands (global, or of one guild), as the fake stored them."""
        return list(self._commands.get(self._guild_key(guild), []))

    def command(self, name: str, guild: FakeGuild | int | None = None) -> dict[str, Any]:
        """One registered command by name; KeyError if it was never synced."""
        for command in self.commands(guild):
            if command["name"] == name:
                return command
        raise KeyError(f"command {name!r} is not registered {'globally' if guild is None else 'in that guild'}")

    def command_option(self, name: str, *path: str, guild: FakeGuild | int | None = None) -> dict[str, Any]:
        """An option of a registered command by path: ``command_option("echo", "image", "style")``."""
        node: dict[str, Any] = self.command(name, guild)
        for part in path:
            node = next((option for option in node.get("options", []) if option["name"] == part), {})
            if not node:
                raise KeyError(f"{name}: no option {part!r} on path {path}")
        return node

    def _guild_key(self, guild: FakeGuild | int | None) -> int | None:
        if guild is None:
            return None
        return guild.id if isinstance(guild, FakeGuild) else int(guild)

    async def wait_for_request(
        self,
        method: str | None,
        path_regex: str,
        *,
        status: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> RecordedRequest:
        """Wait for the next matching request to be answered (earlier ones don't count)."""
        pattern = re.compile(path_regex)

        def predicate(record: RecordedRequest) -> bool:
            return (
                (method is None or record.method == method.upper())
                and bool(pattern.fullmatch(record.path))
                and (status is None or record.status == status)
            )

        waiter = _Waiter(predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``condition()`` holds; it is checked now and after every request the fake answers."""
        if condition():
            return
        waiter = _Waiter(lambda _record: condition(), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _notify(self, record: RecordedRequest) -> None:
        for waiter in list(self._waiters):
            if not waiter.future.done() and waiter.predicate(record):
                waiter.future.set_result(record)

    async def user_message(
        self,
        content: str,
        *,
        channel: FakeChannel | int | None = None,
        user: FakeUser | int | None = None,
        files: Iterable[tuple[str, bytes]] = (),
    ) -> FakeMessage:
        """A message posted by a user (not the bot); dispatched as MESSAGE_CREATE like any other."""
        where = self._channel(channel) if channel is not None else self.channel
        uploads = [UploadedFile(f"files[{index}]", name, None, data) for index, (name, data) in enumerate(files)]
        author = self._user(user) if user is not None else self.user
        return await self._new_message(where.id, author, {"content": content}, uploads, flags=0, kind=0)

    # ------------------------------------------------------------------ attachments / CDN

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        channel: FakeChannel | int | None = None,
        ttl: float = CDN_TTL,
        width: int | None = None,
        height: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Store a file on the fake CDN as a slash-option attachment; returns its resolved attachment object."""
        channel_id = self._channel(channel).id if channel is not None else self.channel.id
        attachment = self._store_attachment(
            channel_id, filename, data, content_type, ttl=ttl, ephemeral=True, description=description
        )
        if width is not None and height is not None:
            attachment.width, attachment.height = width, height
        return self.attachment_payload(attachment)

    def stored_attachment(self, attachment: dict[str, Any] | int | str) -> StoredAttachment:
        """The stored file behind an attachment object or id."""
        key = attachment["id"] if isinstance(attachment, dict) else attachment
        return self._attachments[int(key)]

    def fail_attachment(self, attachment: dict[str, Any] | int | str, status: int | None = 404) -> None:
        """Make the attachment's URLs answer ``status`` (None restores it)."""
        self.stored_attachment(attachment).fail_status = status

    def expire_attachment(self, attachment: dict[str, Any] | int | str) -> None:
        """Make the attachment's URLs expired now (404, as the real CDN answers)."""
        self.stored_attachment(attachment).expires_at = self.now() - 1

    def _store_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None,
        *,
        ttl: float = CDN_TTL,
        ephemeral: bool = False,
        description: str | None = None,
    ) -> StoredAttachment:
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(filename)[0] or content_type
        now = self.now()
        attachment = StoredAttachment(
            id=self.snowflakes.next(),
            channel_id=channel_id,
            filename=filename,
            data=bytes(data),
            content_type=content_type,
            issued_at=now,
            expires_at=now + ttl,
            ephemeral=ephemeral,
            description=description,
        )
        if content_type and content_type.startswith("image/"):
            attachment.width, attachment.height = _image_size(data)
        self._attachments[attachment.id] = attachment
        return attachment

    def hold_cdn(self) -> None:
        """Make attachment downloads wait (they are recorded at once) until ``release_cdn``."""
        self._cdn_gate = asyncio.Event()

    def release_cdn(self) -> None:
        if self._cdn_gate is not None:
            self._cdn_gate.set()
            self._cdn_gate = None

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        record = self._new_record(request, request.path, kind="cdn")
        self.cdn_requests.append(record)
        gate = self._cdn_gate
        if gate is not None:
            self._notify(record)
            await gate.wait()
        status, body, content_type = self._serve_cdn(request)
        record.status = status
        if status != 200:
            record.response = body.decode()
        self._notify(record)
        return web.Response(status=status, body=body, content_type=content_type)

    def _serve_cdn(self, request: web.Request) -> tuple[int, bytes, str]:
        gone = (404, b"This content is no longer available.", "text/plain")
        try:
            attachment = self._attachments[int(request.match_info["attachment_id"])]
            expires = int(request.query["ex"], 16)
            issued = int(request.query["is"], 16)
        except (KeyError, ValueError):
            return gone
        if (
            str(attachment.channel_id) != request.match_info["channel_id"]
            or attachment.filename != request.match_info["filename"]
            or not hmac.compare_digest(request.query.get("hm", ""), self._sign(attachment.id, expires, issued))
        ):
            return gone
        now = self.now()
        if now > expires or now > attachment.expires_at:
            return gone
        if attachment.fail_status is not None:
            return attachment.fail_status, b"attachment failure injected by the test", "text/plain"
        return 200, attachment.data, attachment.content_type or "application/octet-stream"

    # ------------------------------------------------------------------ HTTP pipeline

    def _new_record(self, request: web.Request, path: str, *, kind: str = "api") -> RecordedRequest:
        auth = request.headers.get("Authorization")
        return RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=None,
            files=[],
            auth_header=auth,
            bot_auth=auth == f"Bot {self.token}",
            at=self.now(),
            kind=kind,
        )

    async def _handle_stray(self, request: web.Request) -> web.StreamResponse:
        record = self._new_record(request, request.path, kind="stray")
        record.status = 404
        record.response = {"message": "404: Not Found", "code": 0}
        self.requests.append(record)
        self.unknown_requests.append(record)
        self._notify(record)
        return _json_response(404, record.response, {})

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        record = self._new_record(request, path)
        self.requests.append(record)
        if self._take_drop(request.method, path, after=False):
            await request.read()
            record.kind = "dropped"
            self._notify(record)
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        failure = self._take_failure(request.method, path)
        if failure == 429:
            await request.read()
            limited = {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}
            limited_headers = {"Retry-After": "1", "X-RateLimit-Scope": "user", "Via": "1.1 google"}
            record.status, record.response, record.response_headers = 429, limited, limited_headers
            self.rate_limited.append(record)
            self.invalid_requests.append(record)
            self._notify(record)
            return _json_response(429, limited, limited_headers)
        if failure is not None:
            await request.read()
            record.status, record.response = failure, {"message": f"{failure}: Server Error", "code": 0}
            self._notify(record)
            return _json_response(failure, record.response, {})
        headers: dict[str, str] = {}
        status, body = 500, None
        verdict: Verdict | None = None
        try:
            record.json, record.files = await self._read_body(request)
            route, params = self._match(request.method, path)
            if route is None:
                self.unknown_requests.append(record)
            verdict = self._rate_check(route, params, record)
            headers.update(verdict.headers(time.time()))
            if not verdict.allowed:
                status, body = 429, verdict.body()
            elif route is None:
                raise ApiError(404, 0, "404: Not Found")
            elif route.auth == "bot" and not record.bot_auth:
                raise ApiError(401, 0, "401: Unauthorized")
            else:
                record.route = route.template
                reply = await route.handler(Call(request, record, params, record.json, record.files))
                status, body = reply.status, reply.body
        except ApiError as error:
            status, body = error.status, error.body()
        record.status, record.response, record.response_headers = status, body, headers
        if status == 429:
            self.rate_limited.append(record)
        shared = verdict is not None and headers.get("X-RateLimit-Scope") == "shared"
        if status in (401, 403) or (status == 429 and not shared):
            self.invalid_requests.append(record)
        if self._take_drop(request.method, path, after=True):
            record.kind = "dropped"
            self._notify(record)
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        self._notify(record)
        return _json_response(status, body, headers)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if request.content_type == "multipart/form-data":
            payload: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.filename is not None:
                    data = await part.read(decode=False)
                    files.append(UploadedFile(part.name or "", part.filename, part.headers.get("Content-Type"), data))
                elif part.name == "payload_json":
                    payload = _parse_json(await part.text())
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        if request.content_type == "application/json":
            return _parse_json(raw.decode()), []
        return None, []

    def _register_routes(self) -> None:
        add = self._route
        add("GET", "/users/@me", self._get_me)
        add("GET", "/users/{user_id}", self._get_user)
        add("POST", "/users/@me/channels", self._create_dm)
        add("GET", "/oauth2/applications/@me", self._get_application)
        add("GET", "/applications/@me", self._get_application)
        add("GET", "/gateway", self._get_gateway)
        add("GET", "/gateway/bot", self._get_gateway_bot)
        for prefix in ("/applications/{app_id}", "/applications/{app_id}/guilds/{guild_id}"):
            add("GET", prefix + "/commands", self._get_commands)
            add("PUT", prefix + "/commands", self._put_commands)
            add("POST", prefix + "/commands", self._post_command)
            add("GET", prefix + "/commands/{command_id}", self._get_command)
            add("DELETE", prefix + "/commands/{command_id}", self._delete_command)
        add("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback, auth="none")
        for message_path in ("@original", "{message_id}"):
            path = "/webhooks/{app_id}/{token}/messages/" + message_path
            add("GET", path, self._webhook_get_message, auth="none")
            add("PATCH", path, self._webhook_edit_message, auth="none")
            add("DELETE", path, self._webhook_delete_message, auth="none")
        add("POST", "/webhooks/{app_id}/{token}", self._webhook_execute, auth="none")
        add("GET", "/channels/{channel_id}", self._get_channel)
        add("GET", "/channels/{channel_id}/messages", self._list_messages)
        add("POST", "/channels/{channel_id}/messages", self._create_message)
        add("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message)
        add("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message)
        add("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message)
        add("POST", "/channels/{channel_id}/typing", self._typing)
        add("GET", "/guilds/{guild_id}", self._get_guild)
        add("GET", "/guilds/{guild_id}/channels", self._get_guild_channels)
        add("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member)
        add("POST", "/attachments/refresh-urls", self._refresh_urls)

    def _route(self, method: str, template: str, handler: Handler, *, auth: str = "bot") -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self._routes.append(_Route(method, template, re.compile(regex), handler, auth))

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method != method:
                continue
            match = route.pattern.fullmatch(path)
            if match:
                return route, match.groupdict()
        return None, {}

    def _rate_check(self, route: _Route | None, params: dict[str, str], record: RecordedRequest) -> Verdict:
        limits = self.limits
        extra: list[Bucket] = []
        template = route.template if route else "unknown"
        method = record.method
        if route is None:
            main = Bucket("unknown-route", (method, record.path), limits.default)
        elif template == "/channels/{channel_id}/messages" and method == "POST":
            main = Bucket("channel-send", params["channel_id"], limits.channel_send)
        elif template == "/channels/{channel_id}/messages/{message_id}" and method == "PATCH":
            main = Bucket("channel-edit", params["channel_id"], limits.channel_edit)
            message = self._messages.get(_int(params["message_id"]) or 0)
            if message is not None and self.now() - message.created_at > limits.old_message_age:
                extra.append(
                    Bucket(
                        "old-message-edit",
                        params["channel_id"],
                        limits.old_message_edit,
                        code=30046,
                        message="Maximum number of edits to messages older than 1 hour reached. Try again later.",
                        scope="shared",
                    )
                )
        elif template.startswith("/webhooks/{app_id}/{token}"):
            main = Bucket("interaction-webhook", params["token"], limits.interaction_webhook)
        else:
            major = (
                params.get("channel_id")
                or params.get("guild_id")
                or params.get("interaction_id")
                or params.get("token")
            )
            main = Bucket(f"{method} {template}", major, limits.default)
        global_bucket = None
        if route is not None and route.auth == "bot" and record.bot_auth:
            global_bucket = Bucket("global", self.token, limits.global_limit, scope="global")
        return self._limiter.check(main, extra, global_bucket, self.now())

    # ------------------------------------------------------------------ identity and gateway info

    async def _get_me(self, call: Call) -> Reply:
        data = self.bot_user.payload()
        data.update(verified=True, mfa_enabled=False, locale="en-US", email=None, bot=True)
        return Reply(body=data)

    async def _get_user(self, call: Call) -> Reply:
        user = self._world.users.get(_int(call.params["user_id"]) or 0)
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return Reply(body=user.payload())

    async def _get_application(self, call: Call) -> Reply:
        return Reply(
            body={
                "id": str(self.app_id),
                "name": self.bot_user.username,
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner.payload(),
                "verify_key": self.verify_key,
                "flags": self.app_flags,
                "team": None,
                "summary": "",
                "rpc_origins": [],
                "redirect_uris": [],
                "tags": [],
                "interactions_endpoint_url": None,
                "approximate_guild_count": sum(guild.bot_joined for guild in self._world.guilds.values()),
                "bot": self.bot_user.payload(),
            }
        )

    async def _get_gateway(self, call: Call) -> Reply:
        return Reply(body={"url": self.gateway_url})

    async def _get_gateway_bot(self, call: Call) -> Reply:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        return Reply(body={"url": self.gateway_url, "shards": self.shard_count, "session_start_limit": limit})

    # ------------------------------------------------------------------ application commands

    def _command_scope(self, call: Call) -> int | None:
        if _int(call.params["app_id"]) != self.app_id:
            raise ApiError(404, 10002, "Unknown Application")
        if "guild_id" not in call.params:
            return None
        guild = self._world.guilds.get(_int(call.params["guild_id"]) or 0)
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        if not guild.bot_joined:
            raise ApiError(403, 50001, "Missing Access")
        return guild.id

    async def _get_commands(self, call: Call) -> Reply:
        return Reply(body=self._commands.get(self._command_scope(call), []))

    async def _put_commands(self, call: Call) -> Reply:
        scope = self._command_scope(call)
        payload = call.json
        if not isinstance(payload, list):
            raise invalid_form({"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Only iterables may be used"}]})
        errors: dict[str, Any] = {}
        seen: set[tuple[int, str]] = set()
        for index, command in enumerate(payload):
            _validate_command(command, errors, (index,))
            key = (command.get("type", 1), command.get("name", ""))
            if key in seen:
                _error_at(errors, (index, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate command name")
            seen.add(key)
        if sum(1 for command in payload if command.get("type", 1) == 1) > 100:
            _error_at(errors, (), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        if errors:
            raise invalid_form(errors)
        stored = [self._store_command(scope, command) for command in payload]
        self._commands[scope] = stored
        self.syncs.append(CommandSync(scope, json.loads(json.dumps(payload)), self.now()))
        return Reply(body=stored)

    async def _post_command(self, call: Call) -> Reply:
        scope = self._command_scope(call)
        command = call.body()
        errors: dict[str, Any] = {}
        _validate_command(command, errors, ())
        if errors:
            raise invalid_form(errors)
        stored = self._store_command(scope, command)
        current = [item for item in self._commands.get(scope, []) if item["name"] != stored["name"]]
        self._commands[scope] = [*current, stored]
        return Reply(status=201, body=stored)

    async def _get_command(self, call: Call) -> Reply:
        scope = self._command_scope(call)
        for command in self._commands.get(scope, []):
            if command["id"] == call.params["command_id"]:
                return Reply(body=command)
        raise ApiError(404, 10063, "Unknown application command")

    async def _delete_command(self, call: Call) -> Reply:
        scope = self._command_scope(call)
        commands = self._commands.get(scope, [])
        remaining = [command for command in commands if command["id"] != call.params["command_id"]]
        if len(remaining) == len(commands):
            raise ApiError(404, 10063, "Unknown application command")
        self._commands[scope] = remaining
        return Reply(status=204)

    def _store_command(self, scope: int | None, command: dict[str, Any]) -> dict[str, Any]:
        kind = command.get("type", 1)
        key = (scope, f"{kind}:{command['name']}")
        command_id = self._command_ids.setdefault(key, self.snowflakes.next())
        stored: dict[str, Any] = json.loads(json.dumps(command))
        stored.update(
            id=str(command_id),
            application_id=str(self.app_id),
            version=str(self.snowflakes.next()),
            type=kind,
            description=command.get("description", ""),
            default_member_permissions=command.get("default_member_permissions"),
            nsfw=command.get("nsfw", False),
        )
        stored.setdefault("options", [])
        if scope is not None:
            stored["guild_id"] = str(scope)
        else:
            stored.setdefault("integration_types", [0])
            stored.setdefault("contexts", None)
        return stored

    def registered_command(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        """The command an interaction for ``name`` refers to: guild-registered first, then global."""
        for scope in ([guild_id] if guild_id is not None else []) + [None]:
            for command in self._commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        return None

    # ------------------------------------------------------------------ interactions: callback

    async def push_interaction(
        self,
        payload: dict[str, Any],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> InteractionRecord:
        """Dispatch INTERACTION_CREATE; pushing the same payload again re-delivers it (same id and token)."""
        interaction_id = int(payload["id"])
        record = self.interactions.get(interaction_id)
        if record is None:
            user = (payload.get("member") or {}).get("user") or payload.get("user") or {}
            message = payload.get("message")
            record = InteractionRecord(
                id=interaction_id,
                token=payload["token"],
                type=int(payload["type"]),
                payload=payload,
                pushed_at=self.now(),
                channel_id=_int(payload.get("channel_id")),
                guild_id=_int(payload.get("guild_id")),
                user_id=_int(user.get("id")) or 0,
                attachment_size_limit=int(payload.get("attachment_size_limit", DEFAULT_UPLOAD_LIMIT)),
                message_id=_int(message["id"]) if isinstance(message, dict) else None,
            )
            self.interactions[interaction_id] = record
            self._by_token[record.token] = record
        else:
            record.deliveries += 1
        await self.wait_for_gateway(timeout, shard=self.shard_of(record.guild_id))
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    async def _interaction_callback(self, call: Call) -> Reply:
        record = self.interactions.get(_int(call.params["interaction_id"]) or 0)
        body = call.body()
        callback = CallbackRecord(
            type=body.get("type") if isinstance(body.get("type"), int) else None,
            data=body.get("data"),
            files=call.files,
            at=self.now(),
        )
        if record is not None and record.token == call.params["token"]:
            record.callbacks.append(callback)
        try:
            reply = await self._accept_callback(call, record, callback)
        except ApiError as error:
            callback.status, callback.code = error.status, error.code
            raise
        callback.status = reply.status
        return reply

    async def _accept_callback(self, call: Call, record: InteractionRecord | None, callback: CallbackRecord) -> Reply:
        if record is None or record.token != call.params["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if record.response_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.now() - record.pushed_at > INTERACTION_RESPONSE_WINDOW:
            raise ApiError(404, 10062, "Unknown interaction")
        kind = callback.type
        if kind is None or kind not in ALLOWED_CALLBACKS.get(record.type, frozenset()):
            raise invalid_form({"type": {"_errors": [{"code": "BASE_TYPE_CHOICES", "message": "Invalid callback."}]}})
        data = callback.data if isinstance(callback.data, dict) else {}
        self._check_files(call.files, record.attachment_size_limit)
        message: FakeMessage | None = None
        if kind in (4, 5):
            if kind == 4:
                self._check_message_body(data, files=call.files, creating=True)
            flags = int(data.get("flags") or 0) & RESPONSE_FLAGS
            if kind == 5:
                flags = (flags & EPHEMERAL) | LOADING
                data = {}
            message = await self._new_message(
                record.channel_id or 0,
                self.bot_user,
                data,
                call.files if kind == 4 else [],
                flags=flags,
                kind=20 if record.type == 2 else 0,
                webhook_id=self.app_id,
                interaction=record,
            )
            record.original_id = message.id
        elif kind in (6, 7):
            if record.message_id is None:
                raise invalid_form({"type": {"_errors": [{"code": "INTERACTION_TYPE", "message": "No message."}]}})
            message = self._messages.get(record.message_id)
            if message is None or message.deleted:
                raise unknown_message()
            record.original_id = message.id
            if kind == 7:
                self._check_message_body(data, files=call.files, creating=False)
                await self._edit(message, data, call.files)
        record.response_type = kind
        if not call.query_flag("with_response"):
            return Reply(status=204)
        info: dict[str, Any] = {"id": str(record.id), "type": record.type}
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            info.update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
            if kind != 6:
                resource["message"] = self.message_payload(message)
        return Reply(body={"interaction": info, "resource": resource})

    # ------------------------------------------------------------------ interactions: webhook

    def _webhook_interaction(self, call: Call) -> InteractionRecord:
        if _int(call.params["app_id"]) != self.app_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        record = self._by_token.get(call.params["token"])
        if record is not None and record.token_revoked(self.now()):
            if record.revoked_status == 404:
                raise ApiError(404, 10015, "Unknown Webhook")
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if record is None or self.now() > record.expires_at:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return record

    def _webhook_message(self, call: Call, record: InteractionRecord) -> FakeMessage:
        raw = call.params.get("message_id")
        message_id = record.original_id if raw is None else _int(raw)
        if message_id is None or (raw is not None and message_id not in {record.original_id, *record.followup_ids}):
            raise unknown_message()
        message = self._messages.get(message_id)
        if message is None or message.deleted:
            raise unknown_message()
        return message

    async def _webhook_get_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        return Reply(body=self.message_payload(self._webhook_message(call, record)))

    async def _webhook_edit_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        message = self._webhook_message(call, record)
        data = call.body()
        self._check_files(call.files, record.attachment_size_limit)
        self._check_message_body(data, files=call.files, creating=False)
        await self._edit(message, data, call.files)
        return Reply(body=self.message_payload(message))

    async def _webhook_delete_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        await self._delete(self._webhook_message(call, record))
        return Reply(status=204)

    async def _webhook_execute(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        if record.response_type is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        data = call.body()
        self._check_files(call.files, record.attachment_size_limit)
        self._check_message_body(data, files=call.files, creating=True)
        original = self._messages.get(record.original_id or 0)
        if record.response_type == 5 and original is not None and original.loading and not original.deleted:
            # The first followup after a "thinking" defer replaces the loading message.
            await self._edit(original, data, call.files)
            message = original
        else:
            flags = int(data.get("flags") or 0) & RESPONSE_FLAGS
            message = await self._new_message(
                record.channel_id or 0,
                self.bot_user,
                data,
                call.files,
                flags=flags,
                kind=20 if record.type == 2 else 0,
                webhook_id=self.app_id,
                interaction=record,
            )
            record.followup_ids.append(message.id)
        if not call.query_flag("wait"):
            return Reply(status=204)
        return Reply(body=self.message_payload(message))

    # ------------------------------------------------------------------ channels and messages (bot token)

    def _known_channel(self, call: Call) -> FakeChannel:
        channel = self._world.channels.get(_int(call.params["channel_id"]) or 0)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        guild = self._world.guilds.get(channel.guild_id or 0)
        if guild is not None and not guild.bot_joined:
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def _writable_channel(self, call: Call) -> FakeChannel:
        channel = self._known_channel(call)
        if channel.forbidden:
            raise ApiError(403, 50013, "Missing Permissions")
        return channel

    def _channel_message(self, call: Call, channel: FakeChannel) -> FakeMessage:
        message = self._messages.get(_int(call.params["message_id"]) or 0)
        if message is None or message.deleted or message.ephemeral or message.channel_id != channel.id:
            raise unknown_message()
        return message

    async def _get_channel(self, call: Call) -> Reply:
        return Reply(body=self._known_channel(call).payload())

    async def _list_messages(self, call: Call) -> Reply:
        channel = self._known_channel(call)
        query = call.record.query
        limit = min(max(int(query.get("limit", "50")), 1), 100)
        # Discord answers an empty list, not an error, when the bot may not read the history.
        items = [] if channel.history_hidden else self.messages(channel, include_ephemeral=False)
        if "before" in query:
            items = [message for message in items if message.id < int(query["before"])]
        if "after" in query:
            items = [message for message in items if message.id > int(query["after"])][:limit]
        items = sorted(items, key=lambda message: message.id, reverse=True)[:limit]
        return Reply(body=[self.message_payload(message) for message in items])

    async def _create_message(self, call: Call) -> Reply:
        channel = self._writable_channel(call)
        if channel.type == 1 and any(user.dm_closed for user in channel.recipients):
            raise ApiError(403, 50007, "Cannot send messages to this user")
        data = call.body()
        self._check_files(call.files, self._upload_limit(channel))
        self._check_message_body(data, files=call.files, creating=True)
        nonce = data.get("nonce")
        if nonce is not None and data.get("enforce_nonce"):
            seen = self._nonces.get((channel.id, str(nonce)))
            if seen is not None and self.now() - seen[1] <= NONCE_WINDOW:
                existing = self._messages[seen[0]]
                return Reply(body=self.message_payload(existing))
        flags = int(data.get("flags") or 0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2)
        message = await self._new_message(
            channel.id, self.bot_user, data, call.files, flags=flags, kind=19 if data.get("message_reference") else 0
        )
        if nonce is not None:
            self._nonces[(channel.id, str(nonce))] = (message.id, self.now())
        return Reply(body=self.message_payload(message))

    async def _get_message(self, call: Call) -> Reply:
        channel = self._known_channel(call)
        return Reply(body=self.message_payload(self._channel_message(call, channel)))

    async def _edit_message(self, call: Call) -> Reply:
        channel = self._writable_channel(call)
        message = self._channel_message(call, channel)
        if message.author.id != self.bot_user.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        data = call.body()
        self._check_files(call.files, self._upload_limit(channel))
        self._check_message_body(data, files=call.files, creating=False)
        await self._edit(message, data, call.files)
        return Reply(body=self.message_payload(message))

    async def _delete_message(self, call: Call) -> Reply:
        channel = self._writable_channel(call)
        await self._delete(self._channel_message(call, channel))
        return Reply(status=204)

    async def _typing(self, call: Call) -> Reply:
        self._writable_channel(call)
        return Reply(status=204)

    async def _create_dm(self, call: Call) -> Reply:
        user = self._world.users.get(_int(call.body().get("recipient_id")) or 0)
        if user is None:
            raise invalid_form({"recipient_id": {"_errors": [{"code": "USER_UNKNOWN", "message": "Unknown user"}]}})
        return Reply(body=self.dm_channel(user).payload())

    def _upload_limit(self, channel: FakeChannel) -> int:
        guild = self._world.guilds.get(channel.guild_id or 0)
        tier = guild.premium_tier if guild else 0
        return {2: 50 * MIB, 3: 100 * MIB}.get(tier, self.upload_limit)

    # ------------------------------------------------------------------ guilds

    def _known_guild(self, call: Call) -> FakeGuild:
        guild = self._world.guilds.get(_int(call.params["guild_id"]) or 0)
        if guild is None or not guild.bot_joined:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    async def _get_guild(self, call: Call) -> Reply:
        data = self.guild_payload(self._known_guild(call), full=False)
        data.update(approximate_member_count=len(self._known_guild(call).members), approximate_presence_count=0)
        return Reply(body=data)

    async def _get_guild_channels(self, call: Call) -> Reply:
        return Reply(body=[channel.payload() for channel in self._known_guild(call).channels])

    async def _get_member(self, call: Call) -> Reply:
        guild = self._known_guild(call)
        member = guild.members.get(_int(call.params["user_id"]) or 0)
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return Reply(body=self.member_payload(guild, member))

    async def _refresh_urls(self, call: Call) -> Reply:
        urls = call.body().get("attachment_urls") or []
        if not isinstance(urls, list) or len(urls) > 50:
            raise invalid_form({"attachment_urls": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "<=50"}]}})
        refreshed = []
        for url in urls:
            parts = urlsplit(str(url)).path.split("/")
            attachment = self._attachments.get(_int(parts[-2]) or 0) if len(parts) >= 3 else None
            if attachment is None:
                continue
            attachment.issued_at = self.now()
            attachment.expires_at = max(attachment.expires_at, self.now() + CDN_TTL)
            refreshed.append({"original": url, "refreshed": self.attachment_url(attachment)})
        return Reply(body={"refreshed_urls": refreshed})

    # ------------------------------------------------------------------ message store

    def _check_files(self, files: list[UploadedFile], limit: int) -> None:
        if len(files) > 10:
            raise invalid_form({"files": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Max 10 files"}]}})
        for upload in files:
            if len(upload.data) > limit:
                raise ApiError(413, 40005, "Request entity too large")

    def _check_message_body(self, data: dict[str, Any], *, files: list[UploadedFile], creating: bool) -> None:
        errors: dict[str, Any] = {}
        content = data.get("content")
        if content is not None and not isinstance(content, str):
            _error_at(errors, ("content",), "BASE_TYPE_STRING", "Must be a string.")
        elif isinstance(content, str) and len(content) > 2000:
            _error_at(errors, ("content",), "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = data.get("embeds") or []
        if len(embeds) > 10:
            _error_at(errors, ("embeds",), "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        _check_button_urls(data.get("components") or [], errors, ("components",))
        total = 0
        for index, embed in enumerate(embeds):
            total += _check_embed(embed, errors, ("embeds", index))
        if total > 6000:
            _error_at(errors, ("embeds",), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        if errors:
            raise invalid_form(errors)
        has_body = any(
            data.get(key) for key in ("content", "embeds", "components", "sticker_ids", "poll", "attachments")
        )
        if creating and not has_body and not files:
            raise ApiError(400, 50006, "Cannot send an empty message")

    async def _new_message(
        self,
        channel_id: int,
        author: FakeUser,
        data: dict[str, Any],
        files: list[UploadedFile],
        *,
        flags: int,
        kind: int,
        webhook_id: int | None = None,
        interaction: InteractionRecord | None = None,
    ) -> FakeMessage:
        channel = self._world.channels.get(channel_id)
        guild_id = channel.guild_id if channel else (interaction.guild_id if interaction else None)
        message = FakeMessage(
            id=self.snowflakes.next(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=author,
            created_at=self.now(),
            content=str(data.get("content") or ""),
            embeds=_normalise_embeds(data.get("embeds") or []),
            components=_number_components(data.get("components") or []),
            attachments=self._attachments_for(channel_id, data, files, []),
            flags=flags,
            type=kind,
            tts=bool(data.get("tts")),
            nonce=data.get("nonce"),
            webhook_id=webhook_id,
            interaction_id=interaction.id if interaction else None,
            message_reference=data.get("message_reference"),
        )
        self._messages[message.id] = message
        if channel is not None and not message.ephemeral:
            channel.last_message_id = message.id
        await self._message_event("MESSAGE_CREATE", message)
        return message

    async def _edit(self, message: FakeMessage, data: dict[str, Any], files: list[UploadedFile]) -> None:
        message.history.append(
            {
                "content": message.content,
                "embeds": message.embeds,
                "components": message.components,
                "attachments": [attachment.filename for attachment in message.attachments],
                "flags": message.flags,
                "at": message.edited_at or message.created_at,
            }
        )
        if "content" in data:
            message.content = str(data["content"] or "")
        if "embeds" in data:
            message.embeds = _normalise_embeds(data["embeds"] or [])
        if "components" in data:
            message.components = _number_components(data["components"] or [])
        if files or data.get("attachments") is not None:
            message.attachments = self._attachments_for(message.channel_id, data, files, message.attachments)
        if data.get("flags") is not None:
            keep = message.flags & ~SUPPRESS_EMBEDS
            message.flags = keep | (int(data["flags"]) & SUPPRESS_EMBEDS)
        message.flags &= ~LOADING
        message.edited_at = self.now()
        await self._message_event("MESSAGE_UPDATE", message)

    async def _delete(self, message: FakeMessage) -> None:
        message.deleted = True
        message.deleted_at = self.now()
        await self._message_event("MESSAGE_DELETE", message)

    def _attachments_for(
        self, channel_id: int, data: dict[str, Any], files: list[UploadedFile], existing: list[StoredAttachment]
    ) -> list[StoredAttachment]:
        meta: dict[int, dict[str, Any]] = {}
        for item in data.get("attachments") or []:
            item_id = _int(item.get("id")) if isinstance(item, dict) else None
            if item_id is not None:
                meta[item_id] = item
        new: dict[int, StoredAttachment] = {}
        for position, upload in enumerate(files):
            index = upload.index if upload.index is not None else position
            info = meta.get(index, {})
            new[index] = self._store_attachment(
                channel_id,
                info.get("filename") or upload.filename,
                upload.data,
                upload.content_type,
                description=info.get("description"),
            )
        if data.get("attachments") is None:
            return [*existing, *new.values()]
        by_id = {attachment.id: attachment for attachment in existing}
        kept: list[StoredAttachment] = []
        for item_id in meta:
            if item_id in new:
                kept.append(new.pop(item_id))
            elif item_id in by_id:
                kept.append(by_id[item_id])
        return [*kept, *new.values()]

    async def _message_event(self, event: str, message: FakeMessage) -> None:
        session = self._sessions.get(self.shard_of(message.guild_id))
        if not self.message_events or message.ephemeral or session is None:
            return
        if not session.wants(GUILD_MESSAGES if message.guild_id is not None else DIRECT_MESSAGES):
            return
        guild = self._world.guilds.get(message.guild_id or 0)
        if message.guild_id is not None and (guild is None or not guild.bot_joined):
            return
        if event == "MESSAGE_DELETE":
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
        else:
            data = self.message_payload(message)
        if guild is not None:
            data["guild_id"] = str(guild.id)
            member = guild.members.get(message.author.id)
            if member is not None and event != "MESSAGE_DELETE":
                data["member"] = self.member_payload(guild, member, with_user=False)
        await self.dispatch(event, data)

    # ------------------------------------------------------------------ gateway

    def shard_of(self, guild: FakeGuild | int | None) -> int:
        """The shard that receives a guild's events: ``(guild_id >> 22) % shard_count``; DMs go to shard 0."""
        if guild is None:
            return 0
        guild_id = guild.id if isinstance(guild, FakeGuild) else guild
        return (guild_id >> 22) % self.shard_count

    async def dispatch(self, event: str, data: Any, *, shard: int | None = None) -> int | None:
        """Send a dispatch (op 0) on the session of its shard; buffered for RESUME while disconnected.

        Without ``shard``, the event goes where Discord would send it: the shard of its ``guild_id``, else shard 0.
        """
        if shard is None:
            guild_id = _int(data.get("guild_id")) if isinstance(data, dict) else None
            shard = self.shard_of(guild_id)
        session = self._sessions.get(shard)
        if session is None:
            return None
        return await self._send_dispatch(session, event, data)

    async def _send_dispatch(self, session: GatewaySession, event: str, data: Any) -> int | None:
        if session.invalidated:
            return None
        frame = session.frame(event, data)
        self._log_frame("out", frame)
        connection = session.connection
        if connection is not None:
            await connection.send(frame)
        return int(frame["s"])

    def _shard_ready(self, shard: int) -> asyncio.Event:
        return self._shards_ready.setdefault(shard, asyncio.Event())

    async def wait_for_gateway(self, timeout: float = 5.0, *, shard: int = 0) -> None:  # noqa: ASYNC109
        """Wait until a client has identified (or resumed) on ``shard`` and is connected."""
        await asyncio.wait_for(self._shard_ready(shard).wait(), timeout)

    @property
    def session(self) -> GatewaySession | None:
        """The current gateway session of shard 0."""
        return self._sessions.get(0)

    @property
    def sessions(self) -> dict[int, GatewaySession]:
        """The current gateway session of each shard that has one."""
        return dict(self._sessions)

    def _connected_session(self, shard: int) -> GatewaySession:
        session = self._sessions.get(shard)
        if session is None or session.connection is None:
            raise RuntimeError(f"no gateway connection on shard {shard}")
        return session

    async def drop_gateway(self, code: int = 4000, *, shard: int = 0) -> None:
        """Close a shard's live gateway socket with a (resumable, by default) close code."""
        session = self._connected_session(shard)
        assert session.connection is not None
        self._shard_ready(shard).clear()
        await session.connection.close(code, b"dropped by the test")

    async def request_reconnect(self, *, shard: int = 0) -> None:
        """Send op 7 RECONNECT: the client closes and RESUMEs."""
        session = self._connected_session(shard)
        assert session.connection is not None
        self._shard_ready(shard).clear()
        frame = {"op": RECONNECT, "d": None, "s": None, "t": None}
        self._log_frame("out", frame)
        await session.connection.send(frame)

    async def invalidate_session(self, *, resumable: bool = False, shard: int = 0) -> None:
        """Send op 9; with ``resumable=False`` the client must IDENTIFY again."""
        session = self._connected_session(shard)
        assert session.connection is not None
        self._shard_ready(shard).clear()
        if not resumable:
            session.invalidated = True
        frame = {"op": INVALID_SESSION, "d": resumable, "s": None, "t": None}
        self._log_frame("out", frame)
        await session.connection.send(frame)

    def _log_frame(self, direction: str, frame: dict[str, Any]) -> None:
        self.gateway_log.append(
            GatewayFrame(direction, frame.get("op"), frame.get("t"), frame.get("s"), frame.get("d"), self.now())
        )

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=16 * MIB)
        await ws.prepare(request)
        connection = Connection(ws)
        self._connections.add(connection)
        hello = {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval}, "s": None, "t": None}
        self._log_frame("out", hello)
        await connection.send(hello)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_gateway_frame(connection, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await connection.close(4002, b"Error while decoding payload.")
        finally:
            self._connections.discard(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                self._shard_ready(session.shard_id).clear()
        return ws

    async def _on_gateway_frame(self, connection: Connection, text: str) -> None:
        try:
            frame = json.loads(text)
            op = frame["op"]
        except (ValueError, KeyError, TypeError):
            await connection.close(4002, b"Error while decoding payload.")
            return
        self._log_frame("in", frame)
        data = frame.get("d")
        if op == HEARTBEAT:
            ack = {"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None}
            self._log_frame("out", ack)
            await connection.send(ack)
        elif op == IDENTIFY:
            await self._identify(connection, data if isinstance(data, dict) else {})
        elif op == RESUME:
            await self._resume(connection, data if isinstance(data, dict) else {})
        elif op in (3, 4, 8, 31):
            if connection.session is None:
                await connection.close(4003, b"Not authenticated.")
        else:
            await connection.close(4001, b"Unknown opcode.")

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> None:
        if connection.session is not None:
            await connection.close(4005, b"Already authenticated.")
            return
        if data.get("token") != self.token:
            await connection.close(4004, b"Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            await connection.close(4013, b"Invalid intent(s).")
            return
        shard = data.get("shard")
        refusal = self._shard_refusal(shard)
        if refusal is not None:
            await connection.close(*refusal)
            return
        self.identifies.append(data)
        session = GatewaySession.new(self.token, intents, shard)
        previous = self._sessions.get(session.shard_id)
        if previous is not None and previous.connection is not None and previous.connection is not connection:
            await previous.connection.close(4000, b"Session replaced.")
        session.connection = connection
        connection.session = session
        self._sessions[session.shard_id] = session
        guilds = [
            guild
            for guild in self._world.guilds.values()
            if guild.bot_joined and self.shard_of(guild) == session.shard_id
        ]
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(guild.id), "unavailable": True} for guild in guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "session_type": "normal",
            "application": {"id": str(self.app_id), "flags": self.app_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._send_dispatch(session, "READY", ready)
        for guild in guilds:
            payload = self.guild_payload(guild, all_members=session.wants(GUILD_MEMBERS))
            await self._send_dispatch(session, "GUILD_CREATE", payload)
        self._shard_ready(session.shard_id).set()

    def _shard_refusal(self, shard: Any) -> tuple[int, bytes] | None:
        """Discord's close for an IDENTIFY whose ``shard`` does not fit: 4010 invalid shard, 4011 sharding required.

        Stricter than Discord, which accepts more shards than it recommends: here the count must be exactly
        ``shard_count``, so processes that disagree on SHARD_COUNT are caught.
        """
        if shard is None:
            shard = [0, 1]
        valid_shape = isinstance(shard, list) and len(shard) == 2 and all(type(part) is int for part in shard)
        if not valid_shape or not 0 <= shard[0] < shard[1] or shard[1] > self.shard_count:
            return 4010, b"Invalid shard."
        if shard[1] < self.shard_count:
            return 4011, b"Sharding required."
        return None

    async def _resume(self, connection: Connection, data: dict[str, Any]) -> None:
        session = next(
            (session for session in self._sessions.values() if session.session_id == data.get("session_id")), None
        )
        if session is None or session.invalidated or data.get("token") != self.token:
            frame = {"op": INVALID_SESSION, "d": False, "s": None, "t": None}
            self._log_frame("out", frame)
            await connection.send(frame)
            return
        if session.connection is not None and session.connection is not connection:
            await session.connection.close(4000, b"Session resumed elsewhere.")
        self.resumes.append(data)
        session.connection = connection
        connection.session = session
        seq = data.get("seq")
        for frame in session.missed_since(seq if isinstance(seq, int) else None):
            self._log_frame("out", frame)
            await connection.send(frame)
        await self._send_dispatch(session, "RESUMED", {"_trace": ["fake-discord"]})
        self._shard_ready(session.shard_id).set()


# ---------------------------------------------------------------------- helpers


def _json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    # Exactly "application/json": discord.py only parses JSON when the header has no charset.
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json", headers=headers)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None, None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width, image.height
    except Exception:
        return None, None


def _normalise_embeds(embeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    normalised = []
    for embed in embeds:
        copy = json.loads(json.dumps(embed))
        copy.setdefault("type", "rich")
        normalised.append(copy)
    return normalised


def _number_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    copy: list[dict[str, Any]] = json.loads(json.dumps(components))
    counter = 0

    def walk(items: list[dict[str, Any]]) -> None:
        nonlocal counter
        for item in items:
            counter += 1
            item.setdefault("id", counter)
            walk(item.get("components", []))
            for key in ("component", "accessory"):
                if isinstance(item.get(key), dict):
                    walk([item[key]])

    walk(copy)
    return copy


def _check_button_urls(components: Any, errors: dict[str, Any], path: tuple[str | int, ...]) -> None:
    if not isinstance(components, list):
        return
    for index, item in enumerate(components):
        if not isinstance(item, dict):
            continue
        url = item.get("url")
        if item.get("type") == 2 and isinstance(url, str) and len(url) > MAX_BUTTON_URL:
            _error_at(
                errors,
                (*path, index, "url"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_BUTTON_URL} or fewer in length.",
            )
        _check_button_urls(item.get("components"), errors, (*path, index, "components"))


def _check_embed(embed: dict[str, Any], errors: dict[str, Any], path: tuple[str | int, ...]) -> int:
    size = 0
    for key, limit in (("title", 256), ("description", 4096)):
        value = embed.get(key)
        if isinstance(value, str):
            size += len(value)
            if len(value) > limit:
                _error_at(errors, (*path, key), "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    fields = embed.get("fields") or []
    if len(fields) > 25:
        _error_at(errors, (*path, "fields"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for index, item in enumerate(fields):
        for key, limit in (("name", 256), ("value", 1024)):
            value = item.get(key)
            if not isinstance(value, str) or not value:
                _error_at(errors, (*path, "fields", index, key), "BASE_TYPE_REQUIRED", "This field is required")
                continue
            size += len(value)
            if len(value) > limit:
                message = f"Must be {limit} or fewer in length."
                _error_at(errors, (*path, "fields", index, key), "BASE_TYPE_MAX_LENGTH", message)
    for key, inner, limit in (("footer", "text", 2048), ("author", "name", 256)):
        value = (embed.get(key) or {}).get(inner)
        if isinstance(value, str):
            size += len(value)
            if len(value) > limit:
                _error_at(errors, (*path, key, inner), "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    return size


def _validate_command(command: Any, errors: dict[str, Any], path: tuple[str | int, ...]) -> None:
    if not isinstance(command, dict):
        _error_at(errors, path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    kind = command.get("type", 1)
    name = command.get("name")
    if not isinstance(name, str) or not COMMAND_NAME.match(name) or (kind == 1 and name != name.lower()):
        _error_at(errors, (*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    description = command.get("description", "")
    if kind == 1 and not (isinstance(description, str) and 1 <= len(description) <= 100):
        _error_at(errors, (*path, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    if kind != 1 and description:
        _error_at(errors, (*path, "description"), "APPLICATION_COMMAND_INVALID_DESCRIPTION", "Must be empty.")
    _validate_localizations(command, errors, path)
    _validate_options(command.get("options") or [], errors, (*path, "options"), depth=0)


def _validate_localizations(
    node: dict[str, Any], errors: dict[str, Any], path: tuple[str | int, ...], *, names_are_free: bool = False
) -> None:
    """Localized names follow the name rules (a choice's name is free text of 1-100 characters), localized
    descriptions are 1-100 characters, and every key is a locale Discord knows."""
    for key in ("name_localizations", "description_localizations"):
        localized = node.get(key) or {}
        for locale, text in localized.items():
            here = (*path, key, locale)
            if locale not in LOCALES:
                _error_at(errors, here, "ENUM_TYPE_COERCE", f"Value {locale!r} is not a valid enum value.")
            elif key == "name_localizations" and not names_are_free:
                if not isinstance(text, str) or not COMMAND_NAME.match(text) or text != text.lower():
                    _error_at(errors, here, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            elif not (isinstance(text, str) and 1 <= len(text) <= 100):
                _error_at(errors, here, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")


def _validate_options(options: list[Any], errors: dict[str, Any], path: tuple[str | int, ...], depth: int) -> None:
    if len(options) > 25:
        _error_at(errors, path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    names: set[str] = set()
    for index, option in enumerate(options):
        here = (*path, index)
        kind = option.get("type")
        name = option.get("name")
        if not isinstance(name, str) or not COMMAND_NAME.match(name) or name != name.lower():
            _error_at(errors, (*here, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Option name is invalid")
        elif name in names:
            _error_at(errors, (*here, "name"), "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Duplicate name")
        names.add(str(name))
        description = option.get("description")
        if not (isinstance(description, str) and 1 <= len(description) <= 100):
            _error_at(errors, (*here, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        _validate_localizations(option, errors, here)
        if kind in (1, 2):
            if (kind == 2 and depth > 0) or (kind == 1 and depth > 1):
                _error_at(errors, (*here, "type"), "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Too deeply nested")
            inner = option.get("options") or []
            if kind == 2 and any(item.get("type") != 1 for item in inner):
                _error_at(errors, (*here, "options"), "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Only subcommands")
            _validate_options(inner, errors, (*here, "options"), depth + 1)
            continue
        if option.get("required"):
            if seen_optional:
                _error_at(errors, here, "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", "Required options go first")
        else:
            seen_optional = True
        choices = option.get("choices") or []
        if len(choices) > 25:
            _error_at(errors, (*here, "choices"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if choices and option.get("autocomplete"):
            _error_at(errors, (*here, "autocomplete"), "AUTOCOMPLETE_CHOICES", "Autocomplete excludes choices")
        for choice_index, choice in enumerate(choices):
            choice_name = choice.get("name")
            if not (isinstance(choice_name, str) and 1 <= len(choice_name) <= 100):
                message = "Must be between 1 and 100 in length."
                _error_at(errors, (*here, "choices", choice_index, "name"), "BASE_TYPE_BAD_LENGTH", message)
            _validate_localizations(choice, errors, (*here, "choices", choice_index), names_are_free=True)
            value = choice.get("value")
            if isinstance(value, str) and len(value) > 100:
                message = "Must be 100 or fewer in length."
                _error_at(errors, (*here, "choices", choice_index, "value"), "BASE_TYPE_MAX_LENGTH", message)

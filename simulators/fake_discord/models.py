"""The fake's world: users, guilds, channels, messages, attachments, interactions and the request log."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

EPHEMERAL: Final = 1 << 6
LOADING: Final = 1 << 7
SUPPRESS_EMBEDS: Final = 1 << 2
SUPPRESS_NOTIFICATIONS: Final = 1 << 12

# Permission bits used by the defaults (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR: Final = 1 << 3
ADD_REACTIONS: Final = 1 << 6
VIEW_CHANNEL: Final = 1 << 10
SEND_MESSAGES: Final = 1 << 11
EMBED_LINKS: Final = 1 << 14
ATTACH_FILES: Final = 1 << 15
READ_MESSAGE_HISTORY: Final = 1 << 16
USE_EXTERNAL_EMOJIS: Final = 1 << 18
CONNECT: Final = 1 << 20
SPEAK: Final = 1 << 21
CHANGE_NICKNAME: Final = 1 << 26
USE_APPLICATION_COMMANDS: Final = 1 << 31
CREATE_PUBLIC_THREADS: Final = 1 << 35
SEND_MESSAGES_IN_THREADS: Final = 1 << 38
USE_EXTERNAL_APPS: Final = 1 << 50
ALL_PERMISSIONS: Final = (1 << 51) - 1
EVERYONE_PERMISSIONS: Final = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
    | USE_EXTERNAL_APPS
)
WRITE_PERMISSIONS: Final = SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | SEND_MESSAGES_IN_THREADS | ADD_REACTIONS


@dataclass(eq=False)
class FakeUser:
    """A Discord user; ``dm_closed`` makes DMs to them fail with 50007."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None
    dm_closed: bool = False

    def payload(self) -> dict[str, Any]:
        """The user object as Discord sends it."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": self.avatar,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class FakeRole:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    hoist: bool = False
    managed: bool = False
    mentionable: bool = False

    def payload(self) -> dict[str, Any]:
        """The role object as Discord sends it."""
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "managed": self.managed,
            "mentionable": self.mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }


@dataclass(eq=False)
class FakeChannel:
    """A channel: 0 text, 1 DM, 2 voice, 4 category, 5 announcement.

    ``forbidden`` makes every bot-token write (send, edit, delete, typing) answer 403 50013;
    ``history_hidden`` (no Read Message History) makes reading its messages answer an empty list.
    """

    id: int
    name: str | None
    type: int = 0
    guild_id: int | None = None
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    nsfw: bool = False
    permission_overwrites: list[dict[str, Any]] = field(default_factory=list)
    recipients: list[FakeUser] = field(default_factory=list)
    forbidden: bool = False
    history_hidden: bool = False
    last_message_id: int | None = None

    def payload(self) -> dict[str, Any]:
        """The channel object as Discord sends it."""
        if self.type in (1, 3):
            return {
                "id": str(self.id),
                "type": self.type,
                "recipients": [user.payload() for user in self.recipients],
                "last_message_id": _sf(self.last_message_id),
                "flags": 0,
            }
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "parent_id": _sf(self.parent_id),
            "permission_overwrites": list(self.permission_overwrites),
            "nsfw": self.nsfw,
            "flags": 0,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.type in (0, 5):
            data.update(
                topic=self.topic,
                last_message_id=_sf(self.last_message_id),
                rate_limit_per_user=0,
                default_auto_archive_duration=1440,
            )
        elif self.type == 2:
            data.update(bitrate=64000, user_limit=0, rtc_region=None, rate_limit_per_user=0)
        return data


@dataclass(eq=False)
class FakeMember:
    """A user's membership in a guild."""

    user: FakeUser
    roles: list[int] = field(default_factory=list)
    joined_at: float = 0.0
    nick: str | None = None


@dataclass(eq=False)
class FakeGuild:
    """A guild; ``bot_joined=False`` models a guild where only a user-installed app is present."""

    id: int
    name: str
    owner_id: int
    roles: list[FakeRole] = field(default_factory=list)
    channels: list[FakeChannel] = field(default_factory=list)
    members: dict[int, FakeMember] = field(default_factory=dict)
    bot_joined: bool = True
    premium_tier: int = 0
    preferred_locale: str = "en-US"
    #: Only Community servers may choose a preferred locale; Discord reports en-US for every other one.
    community: bool = False
    created_at: float = 0.0

    @property
    def locale(self) -> str:
        """The guild_locale Discord reports for the server."""
        return self.preferred_locale if self.community else "en-US"

    @property
    def features(self) -> list[str]:
        return ["COMMUNITY"] if self.community else []

    def role(self, role_id: int) -> FakeRole | None:
        """A role by id."""
        return next((role for role in self.roles if role.id == role_id), None)

    def permissions_of(self, user_id: int) -> int:
        """Base permissions of a member (channel overwrites are not modelled)."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        everyone = self.role(self.id)
        value = everyone.permissions if everyone else 0
        for role_id in member.roles if member else []:
            role = self.role(role_id)
            if role is not None:
                value |= role.permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value


@dataclass(eq=False)
class UploadedFile:
    """One file part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes

    @property
    def index(self) -> int | None:
        """The ``n`` of a ``files[n]`` field."""
        match = re.fullmatch(r"files\[(\d+)\]", self.field)
        return int(match.group(1)) if match else None


@dataclass(eq=False)
class StoredAttachment:
    """A file the fake CDN serves; ``fail_status`` makes its URL answer that status instead."""

    id: int
    channel_id: int
    filename: str
    data: bytes
    content_type: str | None
    issued_at: float
    expires_at: float
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False
    fail_status: int | None = None

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)


@dataclass(eq=False)
class FakeMessage:
    """A stored message. ``history`` keeps a snapshot of the visible fields before every edit."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    created_at: float
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    nonce: str | int | None = None
    webhook_id: int | None = None
    interaction_id: int | None = None
    message_reference: dict[str, Any] | None = None
    edited_at: float | None = None
    deleted: bool = False
    deleted_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        """Flag 64: only the invoking user sees it, and only the interaction webhook can reach it."""
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Flag 128: a deferred response still showing "thinking"."""
        return bool(self.flags & LOADING)

    @property
    def edits(self) -> int:
        """How many times the message was edited."""
        return len(self.history)

    def file(self, filename: str) -> bytes:
        """The bytes of one attachment by file name."""
        for attachment in self.attachments:
            if attachment.filename == filename:
                return attachment.data
        raise KeyError(filename)

    def custom_ids(self) -> list[str]:
        """Every ``custom_id`` in the message's components, depth first."""
        found: list[str] = []

        def walk(items: list[dict[str, Any]]) -> None:
            for item in items:
                if "custom_id" in item:
                    found.append(item["custom_id"])
                walk(item.get("components", []))
                if isinstance(item.get("component"), dict):
                    walk([item["component"]])
                if isinstance(item.get("accessory"), dict):
                    walk([item["accessory"]])

        walk(self.components)
        return found


@dataclass(eq=False)
class CallbackRecord:
    """One POST to /interactions/{id}/{token}/callback (accepted or not)."""

    type: int | None
    data: dict[str, Any] | None
    files: list[UploadedFile]
    at: float
    status: int = 0
    code: int | None = None


@dataclass(eq=False)
class InteractionRecord:
    """An interaction the fake dispatched, and what the bot did with it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    pushed_at: float
    channel_id: int | None
    guild_id: int | None
    user_id: int
    attachment_size_limit: int
    message_id: int | None = None
    """For component and modal interactions: the message the component is on."""
    deliveries: int = 1
    callbacks: list[CallbackRecord] = field(default_factory=list)
    response_type: int | None = None
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    revoked_at: float | None = None
    """When (fake clock) Discord stopped honouring the token before its 15 minutes, if it did."""
    revoked_status: int = 401

    @property
    def acknowledged(self) -> bool:
        """Whether a callback was accepted."""
        return self.response_type is not None

    @property
    def expires_at(self) -> float:
        """When the token stops working (fake clock)."""
        return self.pushed_at + 15 * 60

    def token_revoked(self, now: float) -> bool:
        return self.revoked_at is not None and now >= self.revoked_at


@dataclass(eq=False)
class RecordedRequest:
    """One request the fake received.

    ``path`` drops the ``/api/v10`` prefix; ``json`` is the JSON body or the multipart ``payload_json``;
    ``bot_auth`` says whether ``Authorization: Bot <the fake's token>`` was sent.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    files: list[UploadedFile]
    auth_header: str | None
    bot_auth: bool
    at: float
    kind: str = "api"
    route: str | None = None
    status: int = 0
    response: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> int | None:
        """Discord's error code from the response body, if any."""
        if isinstance(self.response, dict):
            code = self.response.get("code")
            return code if isinstance(code, int) else None
        return None


def _sf(value: int | None) -> str | None:
    return None if value is None else str(value)

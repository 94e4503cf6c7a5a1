"""The demo's world: the fake Discord, the three fake providers and the unmodified bot, wired as in production.

Everything here talks to the simulators the way the tests do; the bot is built by ``bot.compose.assemble``
and reaches the fakes only over loopback HTTP and the gateway, as it would reach the real services.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from bot.compose import assemble
from bot.config import Settings
from bot.store import Job
from bot.ui.app import AnimateBot
from simulators.fake_discord import FakeDiscord, FakeMessage, FakeUser, InteractionRecord, connect_client
from simulators.fake_discord.interactions import ATTACHMENT, BOOLEAN, INTEGER, NUMBER
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeProvider, FakeVidu, Outcome

#: The keys the bot is given; the fakes check them, and the side panel shows them masked.
KEYS: Final = {"hidream": "demo-hidream-key", "pixverse": "demo-pixverse-key", "vidu": "demo-vidu-key"}
#: Seconds a job waits, then runs, at each speed of the speed knob: short, but long enough to watch.
SPEEDS: Final = {"fast": (0.5, 4.0), "normal": (1.5, 12.0), "slow": (3.0, 40.0)}
OUTCOMES: Final = ("success", "failed", "moderation")
#: The finished video every simulated provider hands out in the demo: a real 2 s H.264 clip that browsers play
#: (made with ffmpeg once, README "Demo"); the tests' fakes keep their frameless placeholder of the asked length.
CLIP: Final = Path(__file__).parent / "assets" / "clip.mp4"
#: Requests kept per provider for the side panel (newest last).
PANEL_REQUESTS: Final = 40
LONG_TEXT: Final = 96


def mask_key(value: str) -> str:
    """An Authorization header with its secret starred but for the last four characters (the scheme is kept)."""
    scheme, _, secret = value.rpartition(" ")
    masked = "•" * 8 + secret[-4:] if secret else ""
    return f"{scheme} {masked}" if scheme else masked


def shorten(value: Any) -> Any:
    """A request body with long strings (base64 images above all) cut to their start and length."""
    if isinstance(value, dict):
        return {key: shorten(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shorten(item) for item in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str) and len(value) > LONG_TEXT:
        return f"{value[:48]}… ({len(value)} characters)"
    return value


@dataclass
class DemoWorld:
    """Holds the running simulators and bot; every page action goes through here."""

    data_dir: Path
    discord: FakeDiscord = field(default_factory=lambda: FakeDiscord(bot_name="Animator"))
    providers: dict[str, FakeProvider] = field(default_factory=dict)
    bot: AnimateBot | None = None
    speed: str = "normal"
    members: list[FakeUser] = field(default_factory=list)
    _version: int = 0

    def __post_init__(self) -> None:
        wait, run = SPEEDS[self.speed]
        clip = CLIP.read_bytes()
        self.providers = {
            "hidream": FakeHiDream(api_key=KEYS["hidream"], queue_seconds=wait, run_seconds=run, video_bytes=clip),
            "pixverse": FakePixVerse(api_key=KEYS["pixverse"], queue_seconds=wait, run_seconds=run, video_bytes=clip),
            "vidu": FakeVidu(api_key=KEYS["vidu"], queue_seconds=wait, run_seconds=run, video_bytes=clip),
        }
        fake = self.discord
        fake.guild.name = "Demo Server"
        bob = fake.add_user("bob", global_name="Bob")
        fake.add_member(fake.guild, bob)
        fake.add_channel(fake.guild, "videos")
        self.members = [fake.user, bob, fake.owner]

    def settings(self) -> Settings:
        values: dict[str, Any] = {
            "discord_token": self.discord.token,
            "discord_guild_ids": (self.discord.guild.id,),
            "database_url": f"sqlite:///{self.data_dir / 'bot.db'}",
            "inputs_dir": self.data_dir / "inputs",
            "poll_interval_seconds": 0.5,
            "progress_edit_seconds": 1,
            "http_timeout_seconds": 10,
            "health_port": 0,
        }
        for name, fake in self.providers.items():
            values[f"{name}_api_key"] = KEYS[name]
            values[f"{name}_base_url"] = fake.base_url
        return Settings(_env_file=None, **values)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DemoWorld]:
        """Start the fakes, then the bot against them; stop all in reverse order."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.discord)
            for fake in self.providers.values():
                await stack.enter_async_context(fake)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            bot = await stack.enter_async_context(assemble(self.settings(), session, guild_ready_timeout=0.1))
            await stack.enter_async_context(connect_client(self.discord, bot, timeout=30))
            self.bot = bot
            try:
                yield self
            finally:
                self.bot = None

    # ------------------------------------------------------------------ what the page sees

    def member(self, member_id: int | str | None) -> FakeUser:
        for member in self.members:
            if str(member.id) == str(member_id):
                return member
        return self.members[0]

    def commands(self) -> list[dict[str, Any]]:
        """The command tree the bot synced (guild commands first, then global ones), as Discord stored it."""
        return [*self.discord.commands(self.discord.guild), *self.discord.commands(None)]

    def version(self) -> tuple[int, ...]:
        """Changes whenever anything the page shows may have changed; cheap enough to look at often."""
        fake = self.discord
        messages = fake.messages(include_deleted=True)
        return (
            self._version,
            len(fake.requests),
            len(messages),
            sum(message.edits for message in messages),
            *(len(provider.requests) for provider in self.providers.values()),
            *(len(provider.tasks) for provider in self.providers.values()),
        )

    def changed(self) -> None:
        self._version += 1

    def visible_messages(self, viewer: FakeUser, channel_id: int) -> list[dict[str, Any]]:
        shown = []
        for message in self.discord.messages(channel_id):
            record = self.discord.interactions.get(message.interaction_id or 0)
            if message.ephemeral and (record is None or record.user_id != viewer.id):
                continue
            shown.append(self.message_view(message, record))
        return shown

    def message_view(self, message: FakeMessage, record: InteractionRecord | None) -> dict[str, Any]:
        files = {attachment.filename: attachment for attachment in message.attachments}
        embedded: set[str] = set()
        embeds = []
        for embed in message.embeds:
            view = json.loads(json.dumps(embed))
            for key in ("thumbnail", "image"):
                url = view.get(key, {}).get("url") if isinstance(view.get(key), dict) else None
                if isinstance(url, str) and url.startswith("attachment://"):
                    name = url.removeprefix("attachment://")
                    embedded.add(name)
                    attachment = files.get(name)
                    view[key]["url"] = self.file_path(attachment.id, attachment.filename) if attachment else None
            embeds.append(view)
        invoker = self.discord.get_user(record.user_id) if record else None
        first_answer = record is not None and record.type == 2 and record.original_id == message.id
        view_of_message = {
            "id": str(message.id),
            "author": message.author.global_name or message.author.username,
            "bot": message.author.bot,
            "content": self.mentions(message.content),
            "embeds": embeds,
            "components": message.components,
            "attachments": [
                {
                    "filename": attachment.filename,
                    "content_type": attachment.content_type or "",
                    "size": attachment.size,
                    "url": self.file_path(attachment.id, attachment.filename),
                }
                for attachment in message.attachments
                # As in Discord: a file an embed shows is not listed again below the message.
                if attachment.filename not in embedded
            ],
            "ephemeral": message.ephemeral,
            "loading": message.loading,
            "edited": message.edited_at is not None,
            "invoker": (invoker.global_name or invoker.username) if invoker else None,
            "command": (record.payload.get("data") or {}).get("name") if record and first_answer else None,
        }
        # Every loopback URL of a fake (covers, videos, link buttons) goes through the demo server's proxy.
        rewritten: dict[str, Any] = json.loads(self.rewrite_urls(json.dumps(view_of_message)))
        return rewritten

    def mentions(self, text: str) -> str:
        def name(match: re.Match[str]) -> str:
            user = self.discord.get_user(int(match.group(1)))
            return f"@{user.global_name or user.username}" if user else match.group(0)

        return re.sub(r"<@!?(\d+)>", name, text)

    @staticmethod
    def file_path(attachment_id: int, filename: str) -> str:
        return f"/files/{attachment_id}/{filename}"

    def rewrite_urls(self, text: str) -> str:
        """Loopback URLs of the fakes turned into paths the demo server proxies (a browser may not reach them)."""
        for name, fake in self.providers.items():
            text = text.replace(fake.base_url, f"/proxy/{name}")
        return text.replace(self.discord.base_url, "/proxy/discord")

    def proxy_target(self, target: str) -> str | None:
        if target == "discord":
            return self.discord.base_url
        fake = self.providers.get(target)
        return fake.base_url if fake else None

    def provider_panel(self) -> dict[str, Any]:
        panel: dict[str, Any] = {}
        for name, fake in self.providers.items():
            requests = []
            for recorded in fake.requests[-PANEL_REQUESTS:]:
                if recorded.route == "media":
                    continue
                headers = {
                    key: mask_key(value) if key.lower() in ("authorization", "api-key") else value
                    for key, value in recorded.headers.items()
                    if key.lower() in ("authorization", "api-key", "content-type", "ai-trace-id", "api-user-id")
                }
                body = recorded.json if recorded.json is not None else recorded.form
                requests.append(
                    {
                        "method": recorded.method,
                        "path": recorded.path,
                        "route": recorded.route,
                        "headers": headers,
                        "body": shorten(body),
                    }
                )
            wait, run = fake.queue_seconds, fake.run_seconds
            panel[name] = {
                "requests": requests,
                "next_outcomes": [outcome.kind for outcome in fake.outcomes],
                "queue_seconds": wait,
                "run_seconds": run,
                "concurrency": self.concurrency_of(name),
            }
        return panel

    def concurrency_of(self, provider: str) -> int | None:
        fake = self.providers[provider]
        if isinstance(fake, FakeVidu):
            return fake.concurrency
        if isinstance(fake, FakePixVerse):
            return fake.max_concurrent
        return None

    async def ledger_panel(self) -> list[dict[str, Any]]:
        if self.bot is None:
            return []
        store = self.bot.store
        jobs: list[Job] = []
        for member in self.members:
            jobs.extend(await store.jobs_of_user(member.id, limit=20))
        jobs.sort(key=lambda job: job.id, reverse=True)
        views = []
        for job in jobs[:20]:
            events = await store.events(job.id)
            owner = self.discord.get_user(job.user_id)
            views.append(
                {
                    "id": job.id,
                    "member": (owner.global_name or owner.username) if owner else str(job.user_id),
                    "provider": job.provider,
                    "model": job.model,
                    "state": job.state.value,
                    "progress": job.progress,
                    "task_id": job.task_id,
                    "credits": job.credits,
                    "estimated_credits": job.estimated_credits,
                    "error": job.error_reason,
                    "delivered": job.delivered,
                    "events": [
                        {
                            "at": event.at.strftime("%H:%M:%S"),
                            "from": event.from_state.value if event.from_state else None,
                            "to": event.to_state.value,
                            "detail": event.detail,
                        }
                        for event in events
                    ],
                }
            )
        return views

    async def state(self, viewer: FakeUser) -> dict[str, Any]:
        fake = self.discord
        channels = [channel for channel in fake.guild.channels if channel.type == 0]
        return {
            "guild": {"id": str(fake.guild.id), "name": fake.guild.name},
            "bot": fake.bot_user.global_name or fake.bot_user.username,
            "viewer": str(viewer.id),
            "members": [
                {
                    "id": str(member.id),
                    "name": member.global_name or member.username,
                    "admin": member.id == fake.guild.owner_id,
                }
                for member in self.members
            ],
            "channels": [
                {"id": str(channel.id), "name": channel.name, "messages": self.visible_messages(viewer, channel.id)}
                for channel in channels
            ],
            "providers": self.provider_panel(),
            "jobs": await self.ledger_panel(),
            "speed": self.speed,
        }

    # ------------------------------------------------------------------ what the page does

    async def run_command(
        self,
        member: FakeUser,
        channel_id: int,
        name: str,
        subcommand: str | None,
        options: Mapping[str, Any],
        files: Mapping[str, tuple[str, bytes, str]],
    ) -> InteractionRecord:
        """A slash command typed by ``member``: option values typed from the synced tree, files on the CDN."""
        definitions = self.option_definitions(name, subcommand)
        values = {key: typed(value, definitions.get(key, {}).get("type")) for key, value in options.items()}
        attachments = {
            option: self.discord.add_attachment(filename, data, content_type or None, channel=channel_id)
            for option, (filename, data, content_type) in files.items()
            if definitions.get(option, {}).get("type", ATTACHMENT) == ATTACHMENT
        }
        payload = self.discord.slash(
            name, subcommand=subcommand, options=values, attachments=attachments, user=member, channel=channel_id
        )
        record = await self.discord.push_interaction(payload)
        self.changed()
        return record

    def option_definitions(self, name: str, subcommand: str | None) -> dict[str, dict[str, Any]]:
        command = next((command for command in self.commands() if command["name"] == name), None)
        if command is None:
            raise LookupError(f"There is no command /{name}; pick one the bot synced.")
        options: list[dict[str, Any]] = command.get("options", [])
        for part in (subcommand or "").split():
            node = next((option for option in options if option["name"] == part), None)
            if node is None:
                raise LookupError(f"/{name} has no subcommand {part}; pick one the bot synced.")
            options = node.get("options", [])
        return {option["name"]: option for option in options}

    async def click(
        self, member: FakeUser, message_id: int, custom_id: str, values: list[str] | None
    ) -> InteractionRecord:
        """A button click or a menu choice by ``member``, through the fake's interaction path."""
        if values is None:
            payload = self.discord.click(custom_id, message_id, user=member)
        else:
            payload = self.discord.select(custom_id, values, message_id, user=member)
        record = await self.discord.push_interaction(payload)
        self.changed()
        return record

    def set_speed(self, speed: str) -> None:
        if speed not in SPEEDS:
            raise ValueError(f"Speed must be one of {', '.join(SPEEDS)}.")
        self.speed = speed
        wait, run = SPEEDS[speed]
        for fake in self.providers.values():
            fake.queue_seconds, fake.run_seconds = wait, run
        self.changed()

    def next_outcome(self, provider: str, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"The outcome must be one of {', '.join(OUTCOMES)}.")
        self.provider(provider).outcomes.append(Outcome(outcome))
        self.changed()

    def set_concurrency(self, provider: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("The concurrency limit must be 1 or more.")
        fake = self.provider(provider)
        if isinstance(fake, FakeVidu):
            fake.concurrency = limit
        elif isinstance(fake, FakePixVerse):
            fake.max_concurrent = limit
        else:
            raise ValueError("HiDream documents no concurrency limit, its simulator has none: pick Vidu or PixVerse.")
        self.changed()

    def kill_latest_token(self) -> int | None:
        """Discord stops honouring the newest slash command's interaction token, as it sometimes does early."""
        commands = [record for record in self.discord.interactions.values() if record.type == 2]
        if not commands:
            return None
        record = max(commands, key=lambda item: item.id)
        self.discord.revoke_token(record.id)
        self.changed()
        return record.id

    def provider(self, name: str) -> FakeProvider:
        fake = self.providers.get(name)
        if fake is None:
            raise ValueError(f"There is no provider {name!r}; pick hidream, pixverse or vidu.")
        return fake

    def file(self, attachment_id: int) -> tuple[bytes, str] | None:
        try:
            stored = self.discord.stored_attachment(attachment_id)
        except KeyError:
            return None
        return stored.data, stored.content_type or "application/octet-stream"


def typed(value: Any, option_type: int | None) -> Any:
    """A value from the page (text) as the option type the synced tree declares."""
    if option_type == BOOLEAN and isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    if option_type == INTEGER and isinstance(value, str):
        return int(value)
    if option_type == NUMBER and isinstance(value, str):
        return float(value)
    return value

"""The fake Discord against the real discord.py client: login, gateway, app commands, interactions, limits."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from simulators.fake_discord import (
    EPHEMERAL,
    LOADING,
    FakeDiscord,
    InteractionRecord,
    RateLimits,
    connect_client,
    worker_client,
)


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, "PNG")
    return buffer.getvalue()


PNG = png_bytes(2, 3)

Script = Callable[[discord.Interaction, dict[str, Any]], Awaitable[Any]]


@dataclass
class Outcome:
    """What one run of a command or button callback produced."""

    interaction: discord.Interaction
    arguments: dict[str, Any]
    result: Any = None
    error: BaseException | None = None


class JobButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"job:(?P<job_id>\d+)"):
    """A persistent button whose custom id carries a job number."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger, custom_id=f"job:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        assert isinstance(bot, EchoBot)
        await bot.run_script(interaction, {"job_id": self.job_id})


def job_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(job_id))
    return view


echo = app_commands.Group(name="echo", description="Echo things back")


@echo.command(name="image", description="Echo an image back")
@app_commands.describe(picture="The image to echo", style="How to echo it", times="How many copies")
@app_commands.choices(
    style=[app_commands.Choice(name="Loud", value="loud"), app_commands.Choice(name="Quiet", value="quiet")]
)
async def echo_image(
    interaction: discord.Interaction,
    picture: discord.Attachment,
    style: str,
    times: app_commands.Range[int, 1, 5] = 1,
) -> None:
    bot = interaction.client
    assert isinstance(bot, EchoBot)
    await bot.run_script(interaction, {"picture": picture, "style": style, "times": times})


@echo.command(name="text", description="Echo some text back")
@app_commands.describe(text="What to say")
async def echo_text(interaction: discord.Interaction, text: str) -> None:
    bot = interaction.client
    assert isinstance(bot, EchoBot)
    await bot.run_script(interaction, {"text": text})


@echo_text.autocomplete("text")
async def text_suggestions(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=f"{current} world", value=f"{current} world")]


class EchoBot(commands.Bot):
    """A small bot whose command bodies are supplied by each test as ``bot.script``."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned, intents=discord.Intents.default(), guild_ready_timeout=0.1
        )
        self.script: Script | None = None
        self.outcomes: asyncio.Queue[Outcome] = asyncio.Queue()

    async def setup_hook(self) -> None:
        self.tree.add_command(echo)
        self.add_dynamic_items(JobButton)

    async def run_script(self, interaction: discord.Interaction, arguments: dict[str, Any]) -> None:
        outcome = Outcome(interaction, arguments)
        try:
            if self.script is not None:
                outcome.result = await self.script(interaction, arguments)
        except Exception as error:
            outcome.error = error
        self.outcomes.put_nowait(outcome)

    async def next_outcome(self) -> Outcome:
        return await asyncio.wait_for(self.outcomes.get(), 10)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[EchoBot]:
    async with connect_client(fake, EchoBot()) as client:
        yield client


def text_channel(bot: EchoBot, fake: FakeDiscord) -> discord.TextChannel:
    channel = bot.get_channel(fake.channel.id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def run(
    fake: FakeDiscord, bot: EchoBot, payload: dict[str, Any], script: Script
) -> tuple[InteractionRecord, Outcome]:
    bot.script = script
    record = await fake.push_interaction(payload)
    return record, await bot.next_outcome()


# ---------------------------------------------------------------------- login, gateway, commands


async def test_login_ready_guild_and_channel(fake: FakeDiscord, bot: EchoBot) -> None:
    assert bot.user is not None
    assert bot.user.id == fake.bot_user.id
    assert bot.application_id == fake.app_id
    guild = bot.get_guild(fake.guild.id)
    assert guild is not None
    assert guild.name == "Test Guild"
    assert guild.me is not None
    assert guild.member_count == 3
    assert text_channel(bot, fake).name == "general"
    assert [frame.t for frame in fake.gateway_log if frame.op == 0][:2] == ["READY", "GUILD_CREATE"]
    assert fake.identifies[0]["intents"] == discord.Intents.default().value
    assert fake.requests_to("GET", "/users/@me")[0].bot_auth
    assert fake.requests_to("GET", "/oauth2/applications/@me")
    assert not fake.unknown_requests


async def test_tree_sync_records_the_command_tree(fake: FakeDiscord, bot: EchoBot) -> None:
    guild = discord.Object(fake.guild.id)
    bot.tree.copy_global_to(guild=guild)
    synced = await bot.tree.sync(guild=guild)

    assert [command.name for command in synced] == ["echo"]
    assert synced[0].id == int(fake.command("echo", fake.guild)["id"])
    (put,) = fake.requests_to("PUT", rf"/applications/{fake.app_id}/guilds/{fake.guild.id}/commands")
    assert put.bot_auth
    assert put.status == 200
    echo_command = fake.command("echo", fake.guild)
    assert echo_command["description"] == "Echo things back"
    assert [(option["name"], option["type"]) for option in echo_command["options"]] == [("image", 1), ("text", 1)]
    image = fake.command_option("echo", "image", guild=fake.guild)
    assert [(option["name"], option["type"], option["required"]) for option in image["options"]] == [
        ("picture", 11, True),
        ("style", 3, True),
        ("times", 4, False),
    ]
    style = fake.command_option("echo", "image", "style", guild=fake.guild)
    assert style["description"] == "How to echo it"
    assert style["choices"] == [{"name": "Loud", "value": "loud"}, {"name": "Quiet", "value": "quiet"}]
    times = fake.command_option("echo", "image", "times", guild=fake.guild)
    assert (times["min_value"], times["max_value"]) == (1, 5)
    assert fake.syncs[-1].guild_id == fake.guild.id


async def test_gateway_resume_after_a_dropped_connection(fake: FakeDiscord, bot: EchoBot) -> None:
    session = fake.session
    assert session is not None
    await fake.drop_gateway(4000)
    await fake.wait_for_gateway()
    assert fake.resumes[0]["session_id"] == session.session_id
    assert "RESUMED" in [frame.t for frame in fake.gateway_log]

    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> str:
        await interaction.response.send_message(f"said {args['text']}")
        return args["text"]

    record, outcome = await run(fake, bot, fake.slash("echo", subcommand="text", options={"text": "hi"}), script)
    assert outcome.error is None
    original = fake.original(record)
    assert original is not None
    assert original.content == "said hi"
    assert len(fake.identifies) == 1


# ---------------------------------------------------------------------- slash command flow


async def test_slash_defer_edit_followup_and_attachment(fake: FakeDiscord, bot: EchoBot) -> None:
    attachment = fake.add_attachment("cat.png", PNG, "image/png")
    payload = fake.slash(
        "echo", subcommand="image", options={"style": "loud", "times": 3}, attachments={"picture": attachment}
    )

    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> bytes:
        await interaction.response.defer(thinking=True)
        picture: discord.Attachment = args["picture"]
        data = await picture.read()
        embed = discord.Embed(title="Queued", description=f"{args['style']} x{args['times']}")
        await interaction.edit_original_response(embed=embed, view=job_view(5))
        await interaction.followup.send("here it is", file=discord.File(io.BytesIO(data), "echo.png"))
        return data

    record, outcome = await run(fake, bot, payload, script)

    assert outcome.error is None, outcome.error
    assert outcome.result == PNG
    assert outcome.arguments["style"] == "loud"
    assert outcome.arguments["times"] == 3
    picture = outcome.arguments["picture"]
    assert (picture.filename, picture.size, picture.content_type) == ("cat.png", len(PNG), "image/png")
    assert (picture.width, picture.height) == (2, 3)
    assert fake.cdn_requests[0].status == 200

    (callback,) = fake.callbacks(record)
    assert (callback.type, callback.status) == (5, 200)
    (callback_request,) = fake.requests_to("POST", rf"/interactions/{record.id}/[^/]+/callback")
    assert not callback_request.bot_auth
    assert callback_request.query == {"with_response": "1"}

    original = fake.original(record)
    assert original is not None
    assert not original.flags & (LOADING | EPHEMERAL)
    assert original.embeds[0]["title"] == "Queued"
    assert original.embeds[0]["description"] == "loud x3"
    assert original.custom_ids() == ["job:5"]
    assert original.author is fake.bot_user
    assert original in fake.messages(fake.channel)

    (followup,) = fake.followups(record)
    assert followup.content == "here it is"
    assert followup.file("echo.png") == PNG
    (post,) = fake.requests_to("POST", rf"/webhooks/{fake.app_id}/[^/]+")
    assert post.files[0].data == PNG
    assert post.query["wait"] == "1"
    assert not post.bot_auth


async def test_channel_send_edit_and_nonce_with_the_bot_token(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = text_channel(bot, fake)
    message = await channel.send("progress 0%")
    edited = await message.edit(content="progress 50%", embed=discord.Embed(title="Job 1"))
    assert edited.content == "progress 50%"

    stored = fake.message(message.id)
    assert stored is not None
    assert stored.content == "progress 50%"
    assert stored.embeds[0]["title"] == "Job 1"
    assert stored.edited_at is not None
    assert stored.history[0]["content"] == "progress 0%"
    assert all(request.bot_auth for request in fake.requests_to(None, rf"/channels/{channel.id}/messages.*"))

    first = await channel.send("once", nonce="job-1-final")
    second = await channel.send("once", nonce="job-1-final")
    assert first.id == second.id
    assert [item.content for item in fake.messages(fake.channel)].count("once") == 1

    fetched = await channel.fetch_message(message.id)
    assert fetched.embeds[0].title == "Job 1"


async def test_button_click_reaches_its_callback(fake: FakeDiscord, bot: EchoBot) -> None:
    sent = await text_channel(bot, fake).send("job 7 running", view=job_view(7))

    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> int:
        await interaction.response.edit_message(content=f"job {args['job_id']} cancelled", view=None)
        return args["job_id"]

    record, outcome = await run(fake, bot, fake.click("job:7"), script)

    assert outcome.error is None, outcome.error
    assert outcome.result == 7
    assert record.message_id == sent.id
    assert [callback.type for callback in fake.callbacks(record)] == [7]
    stored = fake.message(sent.id)
    assert stored is not None
    assert stored.content == "job 7 cancelled"
    assert stored.components == []


async def test_ephemeral_original_is_only_reachable_through_the_webhook(fake: FakeDiscord, bot: EchoBot) -> None:
    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> discord.InteractionMessage:
        await interaction.response.defer(ephemeral=True, thinking=True)
        return await interaction.edit_original_response(content="only you")

    record, outcome = await run(fake, bot, fake.slash("echo", subcommand="text", options={"text": "x"}), script)
    assert outcome.error is None, outcome.error
    original = fake.original(record)
    assert original is not None
    assert original.ephemeral
    assert original.content == "only you"

    partial = bot.get_partial_messageable(fake.channel.id).get_partial_message(original.id)
    with pytest.raises(discord.NotFound) as raised:
        await partial.edit(content="via the bot token")
    assert raised.value.code == 10008


async def test_autocomplete_is_answered_with_choices(fake: FakeDiscord, bot: EchoBot) -> None:
    payload = fake.autocomplete("echo", subcommand="text", focused="text", options={"text": "hello"})
    record = await fake.push_interaction(payload)
    await fake.wait_until(lambda: any(callback.status for callback in fake.callbacks(record)))

    (callback,) = fake.callbacks(record)
    assert (callback.type, callback.status) == (8, 200)
    assert callback.data == {"choices": [{"name": "hello world", "value": "hello world"}]}


async def test_user_installed_context_has_no_channel_access(fake: FakeDiscord, bot: EchoBot) -> None:
    elsewhere = fake.add_guild("Elsewhere", bot_joined=False, members=[fake.user])

    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> None:
        await interaction.response.send_message("replies still work")
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.send("but channel posts do not")

    payload = fake.slash("echo", subcommand="text", options={"text": "x"}, channel=elsewhere.channels[0])
    record, outcome = await run(fake, bot, payload, script)

    assert bot.get_guild(elsewhere.id) is None
    assert isinstance(outcome.error, discord.Forbidden)
    assert outcome.error.code == 50001
    original = fake.original(record)
    assert original is not None
    assert original.content == "replies still work"


# ---------------------------------------------------------------------- errors


async def test_callback_after_three_seconds_is_unknown_interaction(fake: FakeDiscord, bot: EchoBot) -> None:
    gate = asyncio.Event()

    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> None:
        await gate.wait()
        await interaction.response.defer()

    bot.script = script
    record = await fake.push_interaction(fake.slash("echo", subcommand="text", options={"text": "slow"}))
    fake.advance(3.5)
    gate.set()
    outcome = await bot.next_outcome()

    assert isinstance(outcome.error, discord.NotFound)
    assert outcome.error.code == 10062
    assert [(callback.status, callback.code) for callback in fake.callbacks(record)] == [(404, 10062)]
    assert fake.original(record) is None


async def test_second_acknowledgement_is_refused(fake: FakeDiscord, bot: EchoBot) -> None:
    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> None:
        await interaction.response.defer()

    payload = fake.slash("echo", subcommand="text", options={"text": "twice"})
    record, first = await run(fake, bot, payload, script)
    assert first.error is None
    # The same INTERACTION_CREATE delivered again: the second handler's ack is refused.
    await fake.push_interaction(payload)
    second = await bot.next_outcome()

    assert record.deliveries == 2
    assert isinstance(second.error, discord.HTTPException)
    assert (second.error.status, second.error.code) == (400, 40060)
    assert [callback.status for callback in fake.callbacks(record)] == [200, 400]


async def test_interaction_token_expires_after_fifteen_minutes(fake: FakeDiscord, bot: EchoBot) -> None:
    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> None:
        await interaction.response.defer(thinking=True)

    record, outcome = await run(fake, bot, fake.slash("echo", subcommand="text", options={"text": "t"}), script)
    interaction = outcome.interaction
    await interaction.edit_original_response(content="queued")

    fake.advance(15 * 60 + 1)
    with pytest.raises(discord.HTTPException) as edit_error:
        await interaction.edit_original_response(content="too late")
    assert (edit_error.value.status, edit_error.value.code) == (401, 50027)
    with pytest.raises(discord.HTTPException) as followup_error:
        await interaction.followup.send("too late")
    assert followup_error.value.code == 50027

    original = fake.original(record)
    assert original is not None
    assert original.content == "queued"
    assert [request.status for request in fake.invalid_requests] == [401, 401]
    # The original stays editable with the bot token, as on Discord.
    partial = bot.get_partial_messageable(fake.channel.id).get_partial_message(original.id)
    await partial.edit(content="done")
    assert original.content == "done"


@pytest.mark.parametrize(("status", "code"), [(401, 50027), (404, 10015)])
async def test_a_revoked_token_fails_inside_its_fifteen_minutes(
    fake: FakeDiscord, bot: EchoBot, status: int, code: int
) -> None:
    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> None:
        await interaction.response.defer(thinking=True)

    record, outcome = await run(fake, bot, fake.slash("echo", subcommand="text", options={"text": "t"}), script)
    interaction = outcome.interaction
    fake.revoke_token(record, status=status, after=5)
    await interaction.edit_original_response(content="still alive")
    assert fake.failed_requests(record) == []

    fake.advance(5)
    with pytest.raises(discord.HTTPException) as edit_error:
        await interaction.edit_original_response(content="dead")
    assert (edit_error.value.status, edit_error.value.code) == (status, code)
    with pytest.raises(discord.HTTPException) as followup_error:
        await interaction.followup.send("dead")
    assert followup_error.value.code == code
    assert [request.code for request in fake.failed_requests(record)] == [code, code]
    assert len(fake.failed_requests()) == 2

    original = fake.original(record)
    assert original is not None
    assert original.content == "still alive"
    partial = bot.get_partial_messageable(fake.channel.id).get_partial_message(original.id)
    await partial.edit(content="through the bot token")
    assert original.content == "through the bot token"


async def test_link_buttons_over_512_characters_are_refused(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = text_channel(bot, fake)
    view = discord.ui.View()
    view.add_item(discord.ui.Button(label="Open", url="https://example.com/v.mp4?sig=" + "a" * 500))
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send("video", view=view)
    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert "components.0.components.0.url" in str(refused.value)

    fitting = discord.ui.View()
    fitting.add_item(discord.ui.Button(label="Open", url="https://example.com/v.mp4?sig=" + "a" * 400))
    message = await channel.send("video", view=fitting)
    assert fake.message(message.id) is not None


async def test_a_dropped_connection_is_a_network_error(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = text_channel(bot, fake)
    fake.drop_connection("POST", rf"/channels/{channel.id}/messages$")
    with pytest.raises(aiohttp.ClientError):
        await channel.send("lost")
    await channel.send("delivered")
    assert [message.content for message in fake.messages(fake.channel)] == ["delivered"]


async def test_scripted_server_errors_answer_then_the_route_works_again(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = text_channel(bot, fake)
    fake.fail_requests("POST", rf"/channels/{channel.id}/messages$", status=503, times=2)
    for _ in range(2):
        with pytest.raises(discord.DiscordServerError):
            await channel.send("refused")
    await channel.send("delivered")
    assert [message.content for message in fake.messages(fake.channel)] == ["delivered"]
    statuses = [record.status for record in fake.requests_to("POST", rf"/channels/{channel.id}/messages")]
    assert statuses == [503, 503, 200]
    assert fake.pending_failures() == 0


async def test_a_scripted_429_is_waited_out_by_discord_py_and_counted_as_invalid(
    fake: FakeDiscord, bot: EchoBot
) -> None:
    channel = text_channel(bot, fake)
    fake.fail_requests("POST", rf"/channels/{channel.id}/messages$", status=429)
    await channel.send("delivered")
    assert [message.content for message in fake.messages(fake.channel)] == ["delivered"]
    sends = fake.requests_to("POST", rf"/channels/{channel.id}/messages")
    assert [record.status for record in sends] == [429, 200]
    assert fake.rate_limited == [sends[0]] == fake.invalid_requests
    assert sends[0].response_headers["X-RateLimit-Scope"] == "user"


async def test_deleted_message_is_unknown(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = text_channel(bot, fake)
    message = await channel.send("temporary")
    await message.delete()

    with pytest.raises(discord.NotFound) as edit_error:
        await message.edit(content="again")
    assert edit_error.value.code == 10008
    with pytest.raises(discord.NotFound) as fetch_error:
        await channel.fetch_message(message.id)
    assert fetch_error.value.code == 10008
    stored = fake.message(message.id)
    assert stored is not None
    assert stored.deleted
    assert stored not in fake.messages(fake.channel)


async def test_forbidden_channel_and_closed_dms(fake: FakeDiscord, bot: EchoBot) -> None:
    fake.forbid(fake.channel)
    with pytest.raises(discord.Forbidden) as send_error:
        await text_channel(bot, fake).send("hello")
    assert (send_error.value.status, send_error.value.code) == (403, 50013)

    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> None:
        assert not interaction.app_permissions.send_messages
        await interaction.response.send_message("interaction replies need no channel permission")

    record, outcome = await run(fake, bot, fake.slash("echo", subcommand="text", options={"text": "x"}), script)
    assert outcome.error is None, outcome.error
    assert fake.original(record) is not None

    fake.close_dms(fake.user)
    user = await bot.fetch_user(fake.user.id)
    with pytest.raises(discord.Forbidden) as dm_error:
        await user.send("psst")
    assert dm_error.value.code == 50007
    assert len(fake.invalid_requests) == 2


async def test_upload_over_the_interaction_limit_is_too_large(fake: FakeDiscord, bot: EchoBot) -> None:
    async def script(interaction: discord.Interaction, args: dict[str, Any]) -> None:
        await interaction.response.defer()
        big = discord.File(io.BytesIO(b"\0" * 2048), "video.mp4")
        await interaction.followup.send(file=big)

    payload = fake.slash("echo", subcommand="text", options={"text": "x"}, attachment_size_limit=1024)
    _, outcome = await run(fake, bot, payload, script)
    assert isinstance(outcome.error, discord.HTTPException)
    assert (outcome.error.status, outcome.error.code) == (413, 40005)


# ---------------------------------------------------------------------- rate limits


async def test_channel_sends_are_limited_per_channel(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = text_channel(bot, fake)
    for index in range(3):
        await channel.send(f"bot {index}")
    # A second process (a worker with the same token) uses up the rest of the channel's window ...
    # (its own limiter then sleeps until the window resets, so it runs aside) ...
    async with worker_client(fake) as worker:
        target = worker.get_partial_messageable(channel.id)

        async def worker_burst() -> None:
            for index in range(2):
                await target.send(f"worker {index}")

        burst = asyncio.create_task(worker_burst())
        await fake.wait_until(lambda: len(fake.messages(fake.channel)) == 5)
        # ... so the bot, whose own headers still say 2 remaining, runs into a 429, waits it out and retries.
        for index in range(3, 6):
            await channel.send(f"bot {index}")
        await burst

    sends = fake.requests_to("POST", rf"/channels/{channel.id}/messages")
    assert len([request for request in sends if request.status == 200]) == 8
    assert len(fake.messages(fake.channel)) == 8
    assert fake.rate_limited
    limited = fake.rate_limited[0]
    assert limited.response["retry_after"] > 0
    assert limited.response["global"] is False
    assert limited.response_headers["Via"] == "1.1 google"
    assert limited.response_headers["X-RateLimit-Scope"] == "user"
    assert limited.response_headers["X-RateLimit-Limit"] == "5"
    assert limited.response_headers["X-RateLimit-Remaining"] == "0"
    assert all("X-RateLimit-Bucket" in request.response_headers for request in sends)


async def test_edits_of_old_messages_are_limited_to_three_per_six_seconds(fake: FakeDiscord, bot: EchoBot) -> None:
    message = await text_channel(bot, fake).send("progress 0%")
    fake.advance(3601)
    for percent in (10, 20, 30, 40):
        message = await message.edit(content=f"progress {percent}%")

    assert message.content == "progress 40%"
    edits = fake.requests_to("PATCH", rf"/channels/{fake.channel.id}/messages/{message.id}")
    assert [request.status for request in edits] == [200, 200, 200, 429, 200]
    limited = edits[3]
    assert limited.code == 30046
    assert 0 < limited.response["retry_after"] <= 6
    assert edits[4].at - edits[0].at >= 6
    assert fake.rate_limited == [limited]
    assert limited not in fake.invalid_requests


async def test_rate_limits_can_be_turned_off() -> None:
    async with FakeDiscord(limits=RateLimits(enabled=False)) as fake, connect_client(fake, EchoBot()) as client:
        channel = text_channel(client, fake)
        await asyncio.gather(*(channel.send(f"m{index}") for index in range(12)))
        assert len(fake.messages(fake.channel)) == 12
        assert not fake.rate_limited


# ---------------------------------------------------------------------- raw HTTP details


async def test_unknown_routes_and_expired_attachment_urls(fake: FakeDiscord) -> None:
    attachment = fake.add_attachment("a.png", PNG, "image/png", ttl=60)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.api_url}/nope", headers={"Authorization": f"Bot {fake.token}"}) as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
            assert (await response.json())["code"] == 0
        async with session.get(attachment["url"]) as response:
            assert await response.read() == PNG
        fake.fail_attachment(attachment, 500)
        async with session.get(attachment["url"]) as response:
            assert response.status == 500
        fake.fail_attachment(attachment, None)
        fake.advance(61)
        async with session.get(attachment["url"]) as response:
            assert response.status == 404
        async with session.get(f"{fake.api_url}/users/@me") as response:
            assert response.status == 401
    assert [request.path for request in fake.unknown_requests] == ["/nope"]
    assert fake.invalid_requests[-1].status == 401


# ---------------------------------------------------------------------- gateway shards


class ShardClient(discord.AutoShardedClient):
    """A sharded client that records the interactions its shards receive."""

    def __init__(self, shard_count: int, shard_ids: list[int]) -> None:
        super().__init__(
            intents=discord.Intents.default(), shard_count=shard_count, shard_ids=shard_ids, guild_ready_timeout=0.1
        )
        self.interaction_guilds: list[int | None] = []

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.interaction_guilds.append(interaction.guild_id)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the client's own state, no request to wait for
            await asyncio.sleep(0.01)


async def test_gateway_bot_reports_the_configured_shard_count() -> None:
    async with FakeDiscord(shard_count=3) as fake, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bot {fake.token}"}
        async with session.get(f"{fake.api_url}/gateway/bot", headers=headers) as response:
            body = await response.json(content_type=None)
    assert body["shards"] == 3
    assert body["url"] == fake.gateway_url


async def test_each_shard_gets_only_the_events_of_its_guilds_and_dms_go_to_shard_zero() -> None:
    async with FakeDiscord(shard_count=2) as fake:
        other = fake.add_guild("Other Guild", members=[fake.user], shard=1 - fake.shard_of(fake.guild))
        by_shard = {fake.shard_of(guild): guild for guild in (fake.guild, other)}
        assert set(by_shard) == {0, 1}
        async with (
            connect_client(fake, ShardClient(2, [0])) as first,
            connect_client(fake, ShardClient(2, [1])) as second,
        ):
            assert [guild.id for guild in first.guilds] == [by_shard[0].id]
            assert [guild.id for guild in second.guilds] == [by_shard[1].id]
            assert sorted(session.shard_id for session in fake.sessions.values()) == [0, 1]

            await fake.push_interaction(fake.slash("echo", channel=by_shard[1].channels[0]))
            await eventually(lambda: bool(second.interaction_guilds))
            await fake.push_interaction(fake.slash("echo", channel=by_shard[0].channels[0]))
            await fake.push_interaction(fake.slash("echo", channel=fake.dm_channel(fake.user)))
            await eventually(lambda: len(first.interaction_guilds) == 2)
        assert first.interaction_guilds == [by_shard[0].id, None]
        assert second.interaction_guilds == [by_shard[1].id]
    assert [identify["shard"] for identify in fake.identifies] == [[0, 2], [1, 2]]


@pytest.mark.parametrize(
    ("shard", "code"),
    [([2, 2], 4010), ([0, 3], 4010), ([-1, 2], 4010), ("0", 4010), ([0, 1], 4011), (None, 4011)],
)
async def test_an_identify_with_the_wrong_shard_is_closed(shard: Any, code: int) -> None:
    identify: dict[str, Any] = {"token": "", "intents": 0, "properties": {}}
    if shard is not None:
        identify["shard"] = shard
    async with (
        FakeDiscord(shard_count=2) as fake,
        aiohttp.ClientSession() as session,
        session.ws_connect(fake.gateway_url) as ws,
    ):
        hello = await ws.receive_json()
        assert hello["op"] == 10
        await ws.send_json({"op": 2, "d": {**identify, "token": fake.token}})
        closed = await ws.receive()
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert closed.data == code
    assert fake.sessions == {}


async def test_only_a_community_server_reports_its_preferred_locale(fake: FakeDiscord) -> None:
    community = fake.add_guild("社区", preferred_locale="zh-CN", community=True)
    plain = fake.add_guild("小组", preferred_locale="zh-CN")
    for guild, expected, features in ((community, "zh-CN", ["COMMUNITY"]), (plain, "en-US", [])):
        channel = guild.channels[0]
        payload = fake.slash("ping", channel=channel, locale="zh-CN")
        assert (payload["locale"], payload["guild_locale"]) == ("zh-CN", expected)
        assert payload["guild"] == {"id": str(guild.id), "locale": expected, "features": features}

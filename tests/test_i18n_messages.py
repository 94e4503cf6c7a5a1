"""Messages in the member's or the server's language, end to end through the fake Discord: ephemeral answers
follow the member's locale; the card, its delivery and the log line follow the server (its preferred locale, or
/settings language), and a job keeps the language it started with, across a restart."""

from __future__ import annotations

import re
from typing import Any

import pytest
from discord import app_commands

from bot.store import Job
from bot.ui.tree import check_failure_text
from simulators.fake_discord import FakeChannel, FakeMessage, FakeUser
from tests.discord_world import REQUIRED, World, answer, status_of, world

__all__ = ["world"]

ZH, EN = "zh-CN", "en-US"


def two_servers(world: World) -> tuple[FakeChannel, FakeChannel]:
    """The world's own server (en-US) and a Community server whose preferred locale is zh-CN, with the bot in both."""
    chinese = world.discord.add_guild("中文社区", preferred_locale=ZH, community=True)
    world.overrides["discord_guild_ids"] = (world.discord.guild.id, chinese.id)
    return world.discord.channel, chinese.channels[0]


def member(world: World, name: str, *channels: FakeChannel) -> FakeUser:
    user = world.discord.add_user(name)
    for channel in channels:
        guild = world.discord.get_guild(channel.guild_id or 0)
        if guild is not None and user.id not in guild.members:
            world.discord.add_member(guild, user)
    return user


async def slash(world: World, name: str, *, locale: str, channel: FakeChannel, user: Any, **kwargs: Any) -> Any:
    payload = world.discord.slash(name, locale=locale, channel=channel, user=user, **kwargs)
    interaction = await world.discord.push_interaction(payload)
    await world.discord.wait_until(lambda: world.discord.interaction(interaction).acknowledged)
    return interaction


async def animate(
    world: World, *, locale: str, channel: FakeChannel, user: Any, provider: str = "vidu", **options: Any
) -> Any:
    attachment = world.discord.add_attachment("cat.png", _image(), "image/png")
    return await slash(
        world,
        "animate",
        subcommand=provider,
        options={**REQUIRED[provider], **options},
        attachments={"image": attachment},
        locale=locale,
        channel=channel,
        user=user,
    )


def _image() -> bytes:
    from tests.conftest import image_bytes

    return image_bytes(640, 360)


def embed_text(world: World, interaction: Any) -> str:
    [callback] = world.discord.callbacks(interaction)
    [embed] = callback.data["embeds"]
    parts = [embed.get("title", ""), embed.get("description", ""), embed.get("footer", {}).get("text", "")]
    parts += [f"{field['name']}: {field['value']}" for field in embed.get("fields", [])]
    return "\n".join(parts)


def card_of(world: World, job: Job) -> FakeMessage:
    assert job.message_id is not None
    card = world.discord.message(job.message_id)
    assert card is not None
    return card


def announcement_of(world: World, job: Job) -> FakeMessage:
    [posted] = [
        message
        for message in world.discord.messages(job.channel_id)
        if message.content.startswith(f"<@{job.user_id}>") and re.search(rf"(job|任务) {job.id}\b", message.content)
    ]
    return posted


async def language(world: World, channel: FakeChannel, choice: str) -> str:
    interaction = await slash(
        world,
        "settings",
        subcommand="language",
        options={"language": choice},
        locale=EN,
        channel=channel,
        user=world.discord.owner,
    )
    return embed_text(world, interaction)


async def test_ephemeral_answers_follow_the_member_whatever_the_servers_language(world: World) -> None:
    english_server, chinese_server = two_servers(world)
    ming = member(world, "xiaoming", english_server, chinese_server)
    alice = member(world, "alice", english_server, chinese_server)
    async with world.running():
        for channel in (english_server, chinese_server):
            refused = await animate(world, locale=ZH, channel=channel, user=ming, duration=12)
            assert answer(world, refused) == "Vidu viduq2 只能生成 1 到 10 秒的视频;请修改 `duration`。"
            refused = await animate(world, locale=EN, channel=channel, user=alice, duration=12)
            assert answer(world, refused) == "Vidu viduq2 makes videos of 1 to 10 seconds; change `duration`."

            listed = await slash(world, "jobs", subcommand="list", locale=ZH, channel=channel, user=ming)
            assert answer(world, listed) == "你还没有任务;用 `/animate` 开始一个。"
            listed = await slash(world, "jobs", subcommand="list", locale=EN, channel=channel, user=alice)
            assert answer(world, listed) == "You have no jobs yet; start one with `/animate`."

            quota = await slash(world, "quota", locale=ZH, channel=channel, user=ming)
            assert embed_text(world, quota).startswith("你今天的额度\n每日计数")
            assert "本服务器今天" in embed_text(world, quota)
            quota = await slash(world, "quota", locale=EN, channel=channel, user=alice)
            assert embed_text(world, quota).startswith("Your quota today\nDaily counts reset")

        # A member's list in their language, with the jobs' states; a fr member reads English.
        job = await world.job_for(await animate(world, locale=ZH, channel=chinese_server, user=ming))
        await world.finished(job.id)
        listed = await slash(world, "jobs", subcommand="list", locale=ZH, channel=english_server, user=ming)
        assert "✅ 完成" in embed_text(world, listed)
        assert embed_text(world, listed).startswith("你最近的任务")
        listed = await slash(world, "jobs", subcommand="list", locale="fr", channel=chinese_server, user=ming)
        assert "✅ Done" in embed_text(world, listed)


async def test_the_card_and_its_delivery_follow_the_server_and_settings_language_switches_them(world: World) -> None:
    english_server, chinese_server = two_servers(world)
    ming = member(world, "xiaoming", english_server, chinese_server)
    log = world.discord.add_channel(world.discord.get_guild(chinese_server.guild_id or 0), "日志")
    async with world.running():
        # A Chinese-speaking member in the English server: the card is English.
        job = await world.job_for(await animate(world, locale=ZH, channel=english_server, user=ming))
        done = await world.finished(job.id)
        assert status_of(card_of(world, done)).startswith("✅ **Done**")
        assert announcement_of(world, done).content == f"<@{ming.id}> your video from job {job.id} is ready."

        # An English-speaking member in the Chinese server: the card, the announcement and the log are Chinese.
        interaction = await slash(
            world,
            "settings",
            subcommand="log_channel",
            options={"channel": log.id},
            locale=EN,
            channel=chinese_server,
            user=world.discord.owner,
        )
        assert "Log channel" in embed_text(world, interaction)
        job = await world.job_for(await animate(world, locale=EN, channel=chinese_server, user=ming))
        assert job.language == ZH
        done = await world.finished(job.id)
        card = card_of(world, done)
        assert status_of(card).startswith("✅ **完成**")
        assert card.embeds[0]["footer"]["text"] == f"任务 {job.id}"
        assert card.embeds[0]["title"] == "Vidu viduq2 · 图生视频"
        assert [component["label"] for row in card.components for component in row["components"]] == [
            "打开",
            "重新生成",
            "转换风格",
        ]
        assert announcement_of(world, done).content == f"<@{ming.id}> 任务 {job.id} 的视频已生成。"
        await world.discord.wait_until(lambda: bool(world.discord.messages(log.id)))
        [line] = world.discord.messages(log.id)
        assert line.content.startswith(f"任务 {job.id} · Vidu viduq2 · 图生视频 · <@{ming.id}> · 完成,用时 ")

        # The admin sets English for the Chinese server, and Chinese for the English one.
        assert "Language: en-US" in await language(world, chinese_server, "en-US")
        job = await world.job_for(await animate(world, locale=ZH, channel=chinese_server, user=ming))
        done = await world.finished(job.id)
        assert status_of(card_of(world, done)).startswith("✅ **Done**")
        assert "Language: zh-CN" in await language(world, english_server, "zh-CN")
        job = await world.job_for(await animate(world, locale=EN, channel=english_server, user=ming))
        done = await world.finished(job.id)
        assert status_of(card_of(world, done)).startswith("✅ **完成**")
        assert announcement_of(world, done).content == f"<@{ming.id}> 任务 {job.id} 的视频已生成。"

        # auto: the server's preferred locale again, which Discord reports only for Community servers.
        shown = await language(world, english_server, "auto")
        assert "Language: auto (now en-US" in shown
        assert "Community" in shown
        job = await world.job_for(await animate(world, locale=ZH, channel=english_server, user=ming))
        assert job.language == EN


@pytest.mark.world(run_seconds=3.0)
async def test_a_card_drawn_after_a_restart_keeps_the_language_its_job_started_with(world: World) -> None:
    _, chinese_server = two_servers(world)
    ming = member(world, "xiaoming", chinese_server)
    async with world.running():
        job = await world.job_for(await animate(world, locale=EN, channel=chinese_server, user=ming))
        await world.discord.wait_until(
            lambda: "排队" in status_of(card_of(world, job)) or "生成" in status_of(card_of(world, job))
        )
        assert "Language: en-US" in await language(world, chinese_server, "en-US")
    async with world.running():
        done = await world.finished(job.id)
        assert status_of(card_of(world, done)).startswith("✅ **完成**")
        assert announcement_of(world, done).content == f"<@{ming.id}> 任务 {job.id} 的视频已生成。"


@pytest.mark.world(disabled=("hidream",))
async def test_an_admin_reads_status_in_their_own_language(world: World) -> None:
    english_server, _ = two_servers(world)
    owner = world.discord.owner
    async with world.running():
        job = await world.job_for(await animate(world, locale=ZH, channel=english_server, user=owner))
        done = await world.finished(job.id)
        await slash(
            world,
            "settings",
            subcommand="provider",
            options={"provider": "pixverse", "enabled": False},
            locale=ZH,
            channel=english_server,
            user=owner,
        )
        assert done.finished_at is not None
        assert done.accepted_at is not None
        took = round((done.finished_at - done.accepted_at).total_seconds())

        status = await slash(world, "status", locale=ZH, channel=english_server, user=owner)

        [callback] = world.discord.callbacks(status)
        assert callback.data["flags"] & 64
        [embed] = callback.data["embeds"]
        assert embed["title"] == "机器人状态"
        assert embed["description"] == "所有服务器上共有 0 个任务在进行中(0 个等待,0 个运行)。"
        shown = {field["name"]: field["value"] for field in embed["fields"]}
        assert shown["HiDream"] == "本机器人未配置"
        assert shown["PixVerse"].startswith("已在本服务器关闭\n上次成功:从未\n")
        assert shown["Vidu"] == (
            "已启用\n"
            f"上次成功:<t:{int(done.finished_at.timestamp())}:R>\n"
            "过去一小时的错误:0%(已结束的 1 个任务中 0 个)\n"
            f"运行时间中位数(过去 24 小时):viduq2 {took} 秒\n"
            "队列:0 个等待 · 0 个运行"
        )
        assert shown["本服务器今天"] == "任务:已用 1,无限制\n今天的积分:60 积分,无预算\n本月的积分:60 积分,无预算"
        assert embed["footer"]["text"].startswith("错误指失败和超时的任务")

        # The same figures for an admin whose Discord is English.
        status = await slash(world, "status", locale=EN, channel=english_server, user=owner)
        assert embed_text(world, status).startswith("Status of the bot\n0 jobs in flight on every server")


async def test_a_value_discord_py_cannot_convert_is_refused_in_the_members_language(world: World) -> None:
    english_server, _ = two_servers(world)
    async with world.running():
        for locale, expected in (
            (ZH, "`channel` 需要本服务器的频道;请从 Discord 提供的列表中选择一个。"),
            (EN, "`channel` needs a channel of this server; pick one from the list Discord offers."),
        ):
            # A client with an outdated copy of the command sends text where a channel belongs.
            payload = world.discord.slash(
                "settings",
                subcommand="channel",
                options={"channel": "general", "allowed": True},
                option_types={"channel": 3},
                locale=locale,
                channel=english_server,
                user=world.discord.owner,
            )
            refused = await world.discord.push_interaction(payload)
            await world.discord.wait_until(lambda sent=refused: world.discord.interaction(sent).acknowledged)
            assert answer(world, refused) == expected


@pytest.mark.parametrize(
    ("error", "chinese", "english"),
    [
        (
            app_commands.MissingPermissions(["manage_guild"]),
            "你需要“管理服务器”权限才能使用这个命令。",
            "You need the Manage Server permission to use this command.",
        ),
        (
            app_commands.BotMissingPermissions(["attach_files", "embed_links"]),
            "机器人在这里需要“附加文件, 嵌入链接”权限;请让管理本服务器的人授予它。",
            "The bot needs the Attach Files, Embed Links permission here; ask someone who manages this server to "
            "grant it.",
        ),
        (
            app_commands.NoPrivateMessage(),
            "这个命令只能在服务器中使用,不能在私信中使用。",
            "This command works only in a server, not in direct messages.",
        ),
        (
            app_commands.MissingAnyRole([1, 2]),
            "你没有这个命令需要的身份组。",
            "You do not have a role this command needs.",
        ),
        (
            app_commands.CommandOnCooldown(app_commands.Cooldown(1, 30), 12.2),
            "你使用这个命令太频繁了;请在 13 秒后再试。",
            "You are using this command too often; try again in 13 s.",
        ),
        (
            app_commands.CheckFailure("The check functions failed."),
            "你不能在这里使用这个命令。",
            "You cannot use this command here.",
        ),
    ],
)
def test_discord_pys_check_failures_read_in_the_members_language(
    error: app_commands.CheckFailure, chinese: str, english: str
) -> None:
    assert check_failure_text(error, ZH) == chinese
    assert check_failure_text(error, EN) == english

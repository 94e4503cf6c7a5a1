"""The command surface in Chinese: the tree the real discord.py syncs to the fake Discord carries zh-CN descriptions
on every command, subcommand and option, and zh-CN names on every word-valued choice, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import discord
import pytest

from bot.i18n import LANGUAGES, SOURCE_LANGUAGE
from tests.discord_world import World, world

__all__ = ["world"]

#: Every language but the source one has a localization; the translator gives none for any other locale.
LOCALIZED = set(LANGUAGES) - {SOURCE_LANGUAGE}
#: Options whose choices are provider spellings or provider names: never translated.
SPELLING_OPTIONS = {"model", "resolution", "quality", "provider"}


def nodes(payload: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every command, subcommand and option of a synced payload, with its path."""

    def walk(path: str, node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        yield path, node
        for option in node.get("options") or []:
            yield from walk(f"{path} {option['name']}", option)

    for command in payload:
        yield from walk(command["name"], command)


def options_of(world: World, command: str, *path: str) -> dict[str, dict[str, Any]]:
    node = world.discord.command_option(command, *path, guild=world.discord.guild)
    return {option["name"]: option for option in node["options"]}


async def test_every_description_has_a_chinese_version_within_discords_limit(world: World) -> None:
    async with world.running():
        synced = world.discord.commands(world.discord.guild)
        described = list(nodes(synced))
        assert len(described) > 60
        for path, node in described:
            localized = node.get("description_localizations") or {}
            assert set(localized) == LOCALIZED, path
            chinese = localized["zh-CN"]
            assert 1 <= len(chinese) <= 100, path
            assert chinese != node["description"], path
            assert any("\u4e00" <= character <= "\u9fff" for character in chinese), path
            # The canonical names are the contract: no localized names for commands or options.
            assert not node.get("name_localizations"), path


async def test_word_valued_choices_have_chinese_names_and_provider_spellings_none(world: World) -> None:
    async with world.running():
        synced = world.discord.commands(world.discord.guild)
        word_choices = spelled = 0
        for path, node in nodes(synced):
            for choice in node.get("choices") or []:
                localized = choice.get("name_localizations") or {}
                # Locale codes (/settings language) are spellings too; its "auto" is a word.
                spelling = node["name"] in SPELLING_OPTIONS or choice["value"] in LANGUAGES
                if spelling or not isinstance(choice["value"], str):
                    assert not localized, f"{path}: {choice['name']}"
                    spelled += 1
                else:
                    assert set(localized) == LOCALIZED, f"{path}: {choice['name']}"
                    assert 1 <= len(localized["zh-CN"]) <= 100
                    assert choice["name"] == choice["value"], "the English name stays the provider's spelling"
                    word_choices += 1
        assert word_choices > 30
        assert spelled > 15


async def test_the_named_choices_read_as_the_providers_name_them(world: World) -> None:
    async with world.running():

        def chinese(options: dict[str, dict[str, Any]], option: str) -> dict[str, str]:
            return {choice["value"]: choice["name_localizations"]["zh-CN"] for choice in options[option]["choices"]}

        styles = chinese(options_of(world, "stylize"), "style")
        # Seed 001 names every style in Chinese.
        assert styles == {
            "barbie_doll": "芭比",
            "ink_wash": "水墨",
            "van_goph": "梵高",
            "hayao_miyazaki": "宫崎骏",
            "cyber_punk": "赛博朋克",
            "cartoon": "卡通",
            "anime": "动漫",
            "vector_art": "矢量艺术",
            "abstract": "抽象",
            "watercolor": "水彩",
        }
        vidu = options_of(world, "animate", "vidu")
        assert list(chinese(vidu, "movement_amplitude")) == ["auto", "small", "medium", "large"]
        assert chinese(vidu, "movement_amplitude")["auto"] == "自动"
        pixverse = options_of(world, "animate", "pixverse")
        assert set(chinese(pixverse, "motion_mode")) == {"normal", "fast"}
        assert chinese(pixverse, "thinking") == {"enabled": "打开", "disabled": "关闭", "auto": "自动"}
        assert [choice["name"] for choice in pixverse["model"]["choices"]][:2] == ["v3.5", "v4"]
        assert all("name_localizations" not in choice for choice in vidu["model"]["choices"])
        settings = options_of(world, "settings", "provider")
        assert all("name_localizations" not in choice for choice in settings["provider"]["choices"])
        assert settings["provider"]["description_localizations"]["zh-CN"]


@pytest.mark.parametrize(
    ("field", "localizations"),
    [
        ("description_localizations", {"zh-CN": "长" * 101}),
        ("description_localizations", {"zh-CN": ""}),
        ("description_localizations", {"zh": "描述"}),
        ("name_localizations", {"zh-CN": "Hello"}),
        ("name_localizations", {"zh-CN": "两个 词"}),
    ],
)
async def test_discord_refuses_a_localization_it_cannot_show(
    world: World, field: str, localizations: dict[str, str]
) -> None:
    command = {"name": "echo", "description": "Says it again.", "type": 1, field: localizations}
    async with world.running() as bot:
        assert bot.application_id is not None
        with pytest.raises(discord.HTTPException) as refused:
            await bot.http.bulk_upsert_guild_commands(bot.application_id, world.discord.guild.id, [command])
        assert (refused.value.status, refused.value.code) == (400, 50035)
        accepted = {**command, field: {"zh-CN": "回声"}}
        await bot.http.bulk_upsert_guild_commands(bot.application_id, world.discord.guild.id, [accepted])
        assert world.discord.command("echo", world.discord.guild)[field] == {"zh-CN": "回声"}

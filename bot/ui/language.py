"""Whose language a message is in: an ephemeral answer follows the member who asked, a public message (a card,
its delivery, an announcement, a log line) follows the server."""

from __future__ import annotations

from typing import Any

import discord

from bot.i18n import language_for, server_language
from bot.store import Store


def member_language(interaction: discord.Interaction[Any]) -> str:
    """The language of an answer only the member sees: their client's locale (zh-CN: Chinese; else English)."""
    return language_for(interaction.locale.value)


async def server_language_of(store: Store, interaction: discord.Interaction[Any]) -> str:
    """The language of the server's public messages: ``/settings language``, else its preferred locale.

    Outside a server (a DM with the bot) the public message is the member's own, so it follows them.
    """
    if interaction.guild_id is None:
        return member_language(interaction)
    settings = await store.guild_settings(interaction.guild_id)
    guild_locale = interaction.guild_locale.value if interaction.guild_locale is not None else None
    return server_language(settings.language, guild_locale)

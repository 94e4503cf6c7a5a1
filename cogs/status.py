"""/status (server admins): whether the providers are healthy, how busy the bot is, and this server's usage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str

from bot.errors import UserError
from bot.jobs.admission import Limits, credits_now, usage_now
from bot.providers import PROVIDER_NAMES
from bot.ui.language import member_language
from bot.ui.status import ServerUsage, status_embed
from cogs.common import bot_of

if TYPE_CHECKING:
    from bot.ui.app import AnimateBot


@app_commands.command(
    name="status", description=locale_str("The providers' health, the jobs in flight and this server's usage.")
)
@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
async def status(interaction: discord.Interaction[Any]) -> None:
    # Discord hides the command from members without Manage Server; this holds even if an admin changes
    # the command's permissions.
    permissions = getattr(interaction, "permissions", None)
    if interaction.guild_id is None or not (permissions and permissions.manage_guild):
        raise UserError("Only members who can manage this server can see the bot's status.")
    bot = bot_of(interaction)
    now = bot.now()
    figures = await bot.store.provider_figures(list(PROVIDER_NAMES), now=now)
    guild = await bot.store.guild_settings(interaction.guild_id)
    user_id, guild_id = interaction.user.id, interaction.guild_id
    server = ServerUsage(
        limits=Limits.of(guild, bot.settings),
        jobs=await usage_now(bot.store, user_id=user_id, guild_id=guild_id, now=now),
        credits=await credits_now(bot.store, user_id=user_id, guild_id=guild_id, now=now),
    )
    embed = status_embed(
        figures,
        configured=bot.providers.keys(),
        turned_off=guild.disabled_providers,
        server=server,
        language=member_language(interaction),
    )
    await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    bot.tree.add_command(status)

"""/settings (server admins) and /quota (everyone): who may use the bot, where, and how much."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str

from bot.errors import UserError
from bot.i18n import AUTO, LANGUAGE_SETTINGS, mark, server_language, translate
from bot.jobs.admission import Limits, credits_now, credits_text, next_month, next_reset, usage_now
from bot.providers import PROVIDER_NAMES
from bot.store import GuildSettings
from bot.ui.language import member_language
from cogs.common import bot_of

if TYPE_CHECKING:
    from bot.ui.app import AnimateBot

PROVIDER_CHOICES = [app_commands.Choice(name=label, value=name) for name, label in PROVIDER_NAMES.items()]
#: The contract's names: auto, en-US, zh-CN (locale codes read the same in every language).
LANGUAGE_CHOICES = [app_commands.Choice(name=name, value=name) for name in LANGUAGE_SETTINGS]


def _limit(value: int, language: str) -> str:
    return translate(language, "no limit") if value == 0 else str(value)


def _budget(value: int, language: str) -> str:
    return (
        translate(language, "no budget")
        if value == 0
        else translate(language, "{credits} credits", credits=format(value, ","))
    )


async def settings_card(interaction: discord.Interaction[Any], guild: GuildSettings) -> discord.Embed:
    """The server's settings, for the admin alone: in their language."""
    bot = bot_of(interaction)
    lang = member_language(interaction)
    limits = Limits.of(guild, bot.settings)
    configured = [name for name in PROVIDER_NAMES if name in bot.providers]
    providers = ", ".join(
        f"{PROVIDER_NAMES[name]} "
        + (translate(lang, "off") if name in guild.disabled_providers else translate(lang, "on"))
        for name in configured
    )
    channels = ", ".join(f"<#{channel}>" for channel in sorted(guild.allowed_channels))
    # i18n: embed title
    title = translate(lang, "Settings of this server")
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    providers = providers or translate(lang, "none configured on the bot")
    # i18n: field name
    embed.add_field(name=translate(lang, "Providers"), value=providers, inline=False)
    # i18n: field name
    embed.add_field(name=translate(lang, "Channels"), value=channels or translate(lang, "every channel"), inline=False)
    for name, value in (
        (mark("Unfinished jobs per member"), _limit(limits.active_per_user, lang)),
        (mark("Jobs per member per day"), _limit(limits.per_user_per_day, lang)),
        (mark("Jobs per server per day"), _limit(limits.per_guild_per_day, lang)),
        (mark("Credits per day"), _budget(limits.credits_per_day, lang)),
        (mark("Credits per month"), _budget(limits.credits_per_month, lang)),
    ):
        embed.add_field(name=translate(lang, name), value=value)
    log_channel = f"<#{guild.log_channel_id}>" if guild.log_channel_id else translate(lang, "none")
    # i18n: field name
    embed.add_field(name=translate(lang, "Log channel"), value=log_channel)
    dm = translate(lang, "allowed") if guild.allow_dm else translate(lang, "not allowed")
    # i18n: field name
    embed.add_field(name=translate(lang, "Results by DM"), value=dm)
    guild_locale = interaction.guild_locale.value if interaction.guild_locale is not None else None
    now = server_language(guild.language, guild_locale)
    if guild.language == AUTO:
        chosen = translate(lang, "auto (now {language}, the server's preferred locale)", language=now)
    else:
        chosen = guild.language
    # i18n: field name
    embed.add_field(
        name=translate(lang, "Language"),
        value=translate(
            lang,
            "{chosen}. Cards, deliveries and announcements use it; each member reads their own answers in their "
            "Discord language. Only Community servers can set a preferred locale in Discord (every other server "
            "reports en-US), so `/settings language` is how most servers choose.",
            chosen=chosen,
        ),
        inline=False,
    )
    return embed


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ServerSettings(
    app_commands.Group, name="settings", description=locale_str("Who may use the bot here, where and how much.")
):
    """Stored per server, effective at once."""

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        # Discord hides the command from members without Manage Server; this holds even if an admin
        # changes the command's permissions.
        permissions = getattr(interaction, "permissions", None)
        if not (permissions and permissions.manage_guild):
            raise UserError("Only members who can manage this server can change the bot's settings.")
        return True

    async def _change(self, interaction: discord.Interaction[Any], **changes: Any) -> None:
        bot = bot_of(interaction)
        assert interaction.guild_id is not None
        current = await bot.store.guild_settings(interaction.guild_id)
        updated = dataclasses.replace(current, **changes)
        await bot.store.save_guild_settings(updated, by=interaction.user.id)
        await interaction.response.send_message(embed=await settings_card(interaction, updated), ephemeral=True)

    @app_commands.command(name="show", description=locale_str("Show this server's settings."))
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        assert interaction.guild_id is not None
        guild = await bot_of(interaction).store.guild_settings(interaction.guild_id)
        await interaction.response.send_message(embed=await settings_card(interaction, guild), ephemeral=True)

    @app_commands.command(name="provider", description=locale_str("Turn a provider on or off for this server."))
    @app_commands.describe(provider=locale_str("The provider."), enabled=locale_str("Whether members may use it here."))
    @app_commands.choices(provider=PROVIDER_CHOICES)
    async def provider(self, interaction: discord.Interaction[Any], provider: str, enabled: bool) -> None:
        assert interaction.guild_id is not None
        current = await bot_of(interaction).store.guild_settings(interaction.guild_id)
        disabled = set(current.disabled_providers)
        (disabled.discard if enabled else disabled.add)(provider)
        await self._change(interaction, disabled_providers=frozenset(disabled))

    @app_commands.command(
        name="channel", description=locale_str("Allow or stop the bot in a channel (none listed: everywhere).")
    )
    @app_commands.describe(channel=locale_str("The channel."), allowed=locale_str("Whether jobs may be started there."))
    async def channel(
        self, interaction: discord.Interaction[Any], channel: app_commands.AppCommandChannel, allowed: bool
    ) -> None:
        assert interaction.guild_id is not None
        current = await bot_of(interaction).store.guild_settings(interaction.guild_id)
        channels = set(current.allowed_channels)
        (channels.add if allowed else channels.discard)(channel.id)
        await self._change(interaction, allowed_channels=frozenset(channels))

    @app_commands.command(name="all_channels", description=locale_str("Let the bot work in every channel again."))
    async def all_channels(self, interaction: discord.Interaction[Any]) -> None:
        await self._change(interaction, allowed_channels=frozenset())

    @app_commands.command(
        name="limits", description=locale_str("Job limits and credit budgets for this server (0: none).")
    )
    @app_commands.describe(
        active=locale_str("Unfinished jobs one member may have at once."),
        per_member_daily=locale_str("Jobs one member may start per UTC day."),
        server_daily=locale_str("Jobs the whole server may start per UTC day."),
        credits_per_day=locale_str("Provider credits the whole server may spend per UTC day (0: no budget)."),
        credits_per_month=locale_str("Provider credits the whole server may spend per UTC month (0: no budget)."),
    )
    async def limits(
        self,
        interaction: discord.Interaction[Any],
        active: app_commands.Range[int, 0, 1000] | None = None,
        per_member_daily: app_commands.Range[int, 0, 100000] | None = None,
        server_daily: app_commands.Range[int, 0, 1000000] | None = None,
        credits_per_day: app_commands.Range[int, 0, 1_000_000_000] | None = None,
        credits_per_month: app_commands.Range[int, 0, 1_000_000_000] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        current = await bot_of(interaction).store.guild_settings(interaction.guild_id)
        await self._change(
            interaction,
            max_active_per_user=current.max_active_per_user if active is None else active,
            max_jobs_per_user_per_day=(
                current.max_jobs_per_user_per_day if per_member_daily is None else per_member_daily
            ),
            max_jobs_per_guild_per_day=current.max_jobs_per_guild_per_day if server_daily is None else server_daily,
            credits_per_day=current.credits_per_day if credits_per_day is None else credits_per_day or None,
            credits_per_month=current.credits_per_month if credits_per_month is None else credits_per_month or None,
        )

    @app_commands.command(name="log_channel", description=locale_str("Where one line per finished or failed job goes."))
    @app_commands.describe(channel=locale_str("The log channel; leave it out to stop logging."))
    async def log_channel(
        self, interaction: discord.Interaction[Any], channel: app_commands.AppCommandChannel | None = None
    ) -> None:
        await self._change(interaction, log_channel_id=channel.id if channel else None)

    @app_commands.command(
        name="dm", description=locale_str("Whether results may be sent by DM when the channel cannot take them.")
    )
    @app_commands.describe(allowed=locale_str("Allow results by direct message."))
    async def dm(self, interaction: discord.Interaction[Any], allowed: bool) -> None:
        await self._change(interaction, allow_dm=allowed)

    @app_commands.command(
        name="language", description=locale_str("The language of cards and announcements here (auto: the server's).")
    )
    @app_commands.describe(
        language=locale_str("auto follows the server's preferred locale (Community servers only); or pick one.")
    )
    @app_commands.choices(language=LANGUAGE_CHOICES)
    async def language(self, interaction: discord.Interaction[Any], language: str) -> None:
        await self._change(interaction, language=language)


@app_commands.command(
    name="quota", description=locale_str("Your jobs and credits today and what is left, and the server's.")
)
async def quota(interaction: discord.Interaction[Any]) -> None:
    bot = bot_of(interaction)
    now = bot.now()
    guild = await bot.store.guild_settings(interaction.guild_id) if interaction.guild_id else GuildSettings(0)
    limits = Limits.of(guild, bot.settings)
    used = await usage_now(bot.store, user_id=interaction.user.id, guild_id=interaction.guild_id, now=now)
    spent = await credits_now(bot.store, user_id=interaction.user.id, guild_id=interaction.guild_id, now=now)

    lang = member_language(interaction)

    def credits(amount: float, budget: int = 0) -> str:
        if not budget:
            return translate(lang, "{credits} credits", credits=credits_text(amount))
        return translate(
            lang,
            "{spent} of {budget} credits, {left} left",
            spent=credits_text(amount),
            budget=format(budget, ","),
            left=credits_text(max(0.0, budget - amount)),
        )

    def line(count: int, limit: int) -> str:
        if limit == 0:
            return translate(lang, "{count} used, no limit", count=count)
        return translate(
            lang, "{count} of {limit} used, {left} left", count=count, limit=limit, left=max(0, limit - count)
        )

    # i18n: embed title
    embed = discord.Embed(title=translate(lang, "Your quota today"), colour=discord.Colour.blurple())
    # i18n: field name
    embed.add_field(
        name=translate(lang, "Unfinished now"), value=line(used.active, limits.active_per_user), inline=False
    )
    # i18n: field name
    name = translate(lang, "Your jobs today")
    embed.add_field(name=name, value=line(used.user_today, limits.per_user_per_day), inline=False)
    embed.add_field(
        # i18n: field name
        name=translate(lang, "Your credits"),
        value=translate(
            lang,
            "today {today} · this month {month}",
            today=credits(spent.user_today),
            month=credits(spent.user_month),
        ),
        inline=False,
    )
    if interaction.guild_id is not None:
        # i18n: field name
        name = translate(lang, "This server today")
        embed.add_field(name=name, value=line(used.guild_today, limits.per_guild_per_day), inline=False)
        embed.add_field(
            # i18n: field name
            name=translate(lang, "This server's credits"),
            value=translate(
                lang,
                "today {today}\nthis month {month}",
                today=credits(spent.guild_today, limits.credits_per_day),
                month=credits(spent.guild_month, limits.credits_per_month),
            ),
            inline=False,
        )
    # i18n: footer
    footer = translate(
        lang, "Failed, refused and never-started jobs do not count; a running job counts with its expected cost."
    )
    embed.set_footer(text=footer)
    embed.description = translate(
        lang,
        "Daily counts reset {daily}, monthly ones {monthly}.",
        daily=discord.utils.format_dt(next_reset(now), "R"),
        monthly=discord.utils.format_dt(next_month(now), "R"),
    )
    await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    bot.tree.add_command(ServerSettings())
    bot.tree.add_command(quota)

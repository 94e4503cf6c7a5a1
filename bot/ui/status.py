"""The /status embed: each provider's health and load, the jobs in flight and one server's usage today."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

import discord

from bot.jobs.admission import Limits, credits_text
from bot.providers import PROVIDER_NAMES
from bot.store import CreditUsage, ProviderFigures, Usage

#: Run times are labelled by model; a provider without models has them by operation.
_OPERATION_LABELS = {"image_to_video": "image to video", "stylize": "restyle"}


@dataclass(frozen=True)
class ServerUsage:
    """A server's usage as /quota counts it, and the limits it is held to."""

    limits: Limits
    jobs: Usage
    credits: CreditUsage


def status_embed(
    figures: Mapping[str, ProviderFigures],
    *,
    configured: Collection[str],
    turned_off: Collection[str],
    server: ServerUsage,
) -> discord.Embed:
    in_flight = sum(provider.in_flight for provider in figures.values())
    queued = sum(provider.queued for provider in figures.values())
    embed = discord.Embed(
        title="Status of the bot",
        description=f"{in_flight} jobs in flight on every server ({queued} waiting, {in_flight - queued} running).",
        colour=discord.Colour.blurple(),
    )
    for name, label in PROVIDER_NAMES.items():
        if name not in configured:
            embed.add_field(name=label, value="Not configured on this bot", inline=False)
            continue
        state = "Turned off on this server" if name in turned_off else "Enabled"
        embed.add_field(
            name=label, value=f"{state}\n{_provider_lines(figures.get(name, ProviderFigures()))}", inline=False
        )
    embed.add_field(name="This server today", value=_usage_lines(server), inline=False)
    embed.set_footer(text="Errors are failed and timed-out jobs; run time is from acceptance to the finished video.")
    return embed


def _provider_lines(figures: ProviderFigures) -> str:
    last = _timestamp(figures.last_success) if figures.last_success else "never"
    if figures.ended_last_hour:
        share = figures.errors_last_hour / figures.ended_last_hour
        errors = f"{share:.0%} ({figures.errors_last_hour} of {figures.ended_last_hour} ended jobs)"
    else:
        errors = "no jobs"
    runs = (
        " · ".join(
            f"{_OPERATION_LABELS.get(label, label)} {_duration(seconds)}"
            for label, seconds in figures.run_seconds.items()
        )
        or "no successes"
    )
    return (
        f"Last success: {last}\n"
        f"Errors in the last hour: {errors}\n"
        f"Median run time (last 24 h): {runs}\n"
        f"Queue: {figures.queued} waiting · {figures.running} running"
    )


def _usage_lines(server: ServerUsage) -> str:
    limits, spent = server.limits, server.credits
    return (
        f"Jobs: {_count_line(server.jobs.guild_today, limits.per_guild_per_day)}\n"
        f"Credits today: {_credit_line(spent.guild_today, limits.credits_per_day)}\n"
        f"Credits this month: {_credit_line(spent.guild_month, limits.credits_per_month)}"
    )


def _count_line(count: int, limit: int) -> str:
    return f"{count} used, no limit" if limit == 0 else f"{count} of {limit} used, {max(0, limit - count)} left"


def _credit_line(amount: float, budget: int) -> str:
    if not budget:
        return f"{credits_text(amount)} credits, no budget"
    return f"{credits_text(amount)} of {budget:,} credits, {credits_text(max(0.0, budget - amount))} left"


def _timestamp(moment: datetime) -> str:
    return f"<t:{int(moment.timestamp())}:R>"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"

"""The /status embed: each provider's health and load, the jobs in flight and one server's usage today, in the
language of the admin who asked (it is theirs alone)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

import discord

from bot.i18n import mark, translate, translate_plural
from bot.jobs.admission import Limits, credits_text
from bot.providers import PROVIDER_NAMES
from bot.store import CreditUsage, ProviderFigures, Usage
from bot.ui.cards import duration

#: Run times are labelled by model; a provider without models has them by operation.
_OPERATION_LABELS = {"image_to_video": mark("image to video"), "stylize": mark("restyle")}


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
    language: str,
) -> discord.Embed:
    lang = language
    in_flight = sum(provider.in_flight for provider in figures.values())
    queued = sum(provider.queued for provider in figures.values())
    embed = discord.Embed(
        # i18n: embed title
        title=translate(lang, "Status of the bot"),
        description=translate_plural(
            lang,
            "{count} job in flight on every server ({queued} waiting, {running} running).",
            "{count} jobs in flight on every server ({queued} waiting, {running} running).",
            in_flight,
            queued=queued,
            running=in_flight - queued,
        ),
        colour=discord.Colour.blurple(),
    )
    for name, label in PROVIDER_NAMES.items():
        if name not in configured:
            # i18n: field value
            embed.add_field(name=label, value=translate(lang, "Not configured on this bot"), inline=False)
            continue
        # i18n: field value
        state = translate(lang, "Turned off on this server") if name in turned_off else translate(lang, "Enabled")
        lines = _provider_lines(figures.get(name, ProviderFigures()), lang)
        embed.add_field(name=label, value=f"{state}\n{lines}", inline=False)
    # i18n: field name
    embed.add_field(name=translate(lang, "This server today"), value=_usage_lines(server, lang), inline=False)
    # i18n: footer
    footer = translate(lang, "Errors are failed and timed-out jobs; run time is from acceptance to the finished video.")
    embed.set_footer(text=footer)
    return embed


def _provider_lines(figures: ProviderFigures, lang: str) -> str:
    last = _timestamp(figures.last_success) if figures.last_success else translate(lang, "never")
    if figures.ended_last_hour:
        share = format(figures.errors_last_hour / figures.ended_last_hour, ".0%")
        errors = translate(
            lang,
            "{share} ({errors} of {ended} ended jobs)",
            share=share,
            errors=figures.errors_last_hour,
            ended=figures.ended_last_hour,
        )
    else:
        errors = translate(lang, "no jobs")
    runs = " · ".join(
        f"{_run_label(label, lang)} {duration(seconds, lang)}" for label, seconds in figures.run_seconds.items()
    ) or translate(lang, "no successes")
    return "\n".join(
        (
            translate(lang, "Last success: {when}", when=last),
            translate(lang, "Errors in the last hour: {errors}", errors=errors),
            translate(lang, "Median run time (last 24 h): {runs}", runs=runs),
            translate(
                lang, "Queue: {queued} waiting · {running} running", queued=figures.queued, running=figures.running
            ),
        )
    )


def _run_label(label: str, lang: str) -> str:
    """A model's name as it is; an operation (a provider without models) in words."""
    return translate(lang, _OPERATION_LABELS[label]) if label in _OPERATION_LABELS else label


def _usage_lines(server: ServerUsage, lang: str) -> str:
    limits, spent = server.limits, server.credits
    return "\n".join(
        (
            translate(lang, "Jobs: {jobs}", jobs=_count_line(server.jobs.guild_today, limits.per_guild_per_day, lang)),
            translate(
                lang,
                "Credits today: {credits}",
                credits=_credit_line(spent.guild_today, limits.credits_per_day, lang),
            ),
            translate(
                lang,
                "Credits this month: {credits}",
                credits=_credit_line(spent.guild_month, limits.credits_per_month, lang),
            ),
        )
    )


def _count_line(count: int, limit: int, lang: str) -> str:
    if limit == 0:
        return translate(lang, "{count} used, no limit", count=count)
    return translate(lang, "{count} of {limit} used, {left} left", count=count, limit=limit, left=max(0, limit - count))


def _credit_line(amount: float, budget: int, lang: str) -> str:
    if not budget:
        return translate(lang, "{credits} credits, no budget", credits=credits_text(amount))
    return translate(
        lang,
        "{spent} of {budget} credits, {left} left",
        spent=credits_text(amount),
        budget=format(budget, ","),
        left=credits_text(max(0.0, budget - amount)),
    )


def _timestamp(moment: datetime) -> str:
    return f"<t:{int(moment.timestamp())}:R>"

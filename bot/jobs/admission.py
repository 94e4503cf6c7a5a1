"""Who may start a job, where, and how many: a server's settings over the environment's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.errors import UserError
from bot.providers import PROVIDER_NAMES
from bot.store import Admission, CreditUsage, GuildSettings, LimitReached, Store, Usage


@dataclass(frozen=True)
class Limits:
    """The limits in force for one server (0 or None: no limit)."""

    active_per_user: int
    per_user_per_day: int
    per_guild_per_day: int
    credits_per_day: int = 0
    credits_per_month: int = 0

    @classmethod
    def of(cls, guild: GuildSettings, defaults: Settings) -> Limits:
        def pick(own: int | None, default: int) -> int:
            return default if own is None else own

        return cls(
            active_per_user=pick(guild.max_active_per_user, defaults.max_active_jobs_per_user),
            per_user_per_day=pick(guild.max_jobs_per_user_per_day, defaults.max_jobs_per_user_per_day),
            per_guild_per_day=pick(guild.max_jobs_per_guild_per_day, defaults.max_jobs_per_guild_per_day),
            credits_per_day=guild.credits_per_day or 0,
            credits_per_month=guild.credits_per_month or 0,
        )


def day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def next_reset(now: datetime) -> datetime:
    return day_start(now) + timedelta(days=1)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


def next_month(now: datetime) -> datetime:
    start = month_start(now)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


async def credits_now(store: Store, *, user_id: int, guild_id: int | None, now: datetime) -> CreditUsage:
    return await store.credit_usage(
        user_id=user_id, guild_id=guild_id, day_start=day_start(now), month_start=month_start(now)
    )


async def usage_now(store: Store, *, user_id: int, guild_id: int | None, now: datetime) -> Usage:
    return await store.usage(user_id=user_id, guild_id=guild_id, since=day_start(now))


async def admit(
    store: Store,
    defaults: Settings,
    *,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    provider: str,
    now: datetime,
) -> Admission:
    """Raise UserError (one sentence, with the limit and when it resets) when the job may not start.

    Returns the limits to check again when the job is written: commands racing each other all pass
    this early check, and only the write decides.
    """
    if guild_id is None:
        guild = GuildSettings(0)
    else:
        guild = await store.guild_settings(guild_id)
    name = PROVIDER_NAMES.get(provider, provider)
    if provider in guild.disabled_providers:
        raise UserError(
            "{provider} is turned off on this server; pick another provider or ask an admin.", provider=name
        )
    if guild.allowed_channels and channel_id not in guild.allowed_channels:
        places = ", ".join(f"<#{channel}>" for channel in sorted(guild.allowed_channels))
        raise UserError("The bot works only in {channels} on this server; start your job there.", channels=places)
    limits = Limits.of(guild, defaults)
    admission = Admission(
        day_start=day_start(now),
        active_per_user=limits.active_per_user,
        per_user_per_day=limits.per_user_per_day,
        per_guild_per_day=limits.per_guild_per_day if guild_id is not None else 0,
        month_start=month_start(now),
        credits_per_day=limits.credits_per_day if guild_id is not None else 0,
        credits_per_month=limits.credits_per_month if guild_id is not None else 0,
    )
    used = await usage_now(store, user_id=user_id, guild_id=guild_id, now=now)
    if admission.active_per_user and used.active >= admission.active_per_user:
        raise refusal(LimitReached("active", used), admission)
    if admission.per_user_per_day and used.user_today >= admission.per_user_per_day:
        raise refusal(LimitReached("user_day", used), admission)
    if admission.per_guild_per_day and used.guild_today >= admission.per_guild_per_day:
        raise refusal(LimitReached("guild_day", used), admission)
    if admission.credits_per_day or admission.credits_per_month:
        spent = await credits_now(store, user_id=user_id, guild_id=guild_id, now=now)
        for limit, budget, total in (
            ("credits_day", admission.credits_per_day, spent.guild_today),
            ("credits_month", admission.credits_per_month, spent.guild_month),
        ):
            if budget and total >= budget:
                raise refusal(LimitReached(limit, used, credits=spent), admission)
    return admission


def refusal(reached: LimitReached, admission: Admission) -> UserError:
    """The sentence for a limit the job would break."""
    used = reached.usage
    reset = f"<t:{int((admission.day_start + timedelta(days=1)).timestamp())}:R>"
    if reached.limit in ("credits_day", "credits_month"):
        return _budget_refusal(reached, admission)
    if reached.limit == "active":
        return UserError(
            "You have {active} unfinished jobs, the most this server allows at once ({limit}); "
            "start another when one ends.",
            active=used.active,
            limit=admission.active_per_user,
        )
    if reached.limit == "user_day":
        return UserError(
            "You have used all {limit} of your jobs for today on this server; the count resets {reset}.",
            limit=admission.per_user_per_day,
            reset=reset,
        )
    return UserError(
        "This server has used all {limit} of its jobs for today; the count resets {reset}.",
        limit=admission.per_guild_per_day,
        reset=reset,
    )


def _budget_refusal(reached: LimitReached, admission: Admission) -> UserError:
    daily = reached.limit == "credits_day"
    budget = admission.credits_per_day if daily else admission.credits_per_month
    spent = (
        reached.credits.guild_today
        if daily and reached.credits
        else reached.credits.guild_month
        if reached.credits
        else 0.0
    )
    left = max(0.0, budget - spent)
    resets = admission.day_start + timedelta(days=1) if daily else next_month(admission.day_start)
    values = {
        "budget": f"{budget:,}",
        "left": credits_text(left),
        "reset": f"<t:{int(resets.timestamp())}:R>",
        "cost": credits_text(reached.estimate or 0),
    }
    if daily and reached.estimate:
        return UserError(
            "This server's credit budget today is {budget} credits; {left} are left and this job would cost "
            "about {cost}, and the budget resets {reset}.",
            **values,
        )
    if daily:
        return UserError(
            "This server's credit budget today is {budget} credits; {left} are left, and the budget resets {reset}.",
            **values,
        )
    if reached.estimate:
        return UserError(
            "This server's credit budget this month is {budget} credits; {left} are left and this job would cost "
            "about {cost}, and the budget resets {reset}.",
            **values,
        )
    return UserError(
        "This server's credit budget this month is {budget} credits; {left} are left, and the budget resets {reset}.",
        **values,
    )


def credits_text(amount: float) -> str:
    """A credit amount as people read it: whole numbers without decimals, others with at most one."""
    return f"{amount:,.0f}" if float(amount).is_integer() else f"{amount:,.1f}"

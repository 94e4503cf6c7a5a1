"""``python -m bot check``: prove the configuration and every credential with the cheapest real call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import discord

from bot.config import Settings
from bot.providers import PROVIDER_NAMES, build_providers
from providers.errors import CredentialsRefused, ProviderError, ProviderUnavailable


@dataclass(frozen=True)
class CheckRow:
    """One line of the report."""

    name: str
    ok: bool
    status: str
    credits: str = ""
    fix: str = ""


async def check_discord(settings: Settings) -> CheckRow:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        user = await http.static_login(settings.discord_token.get_secret_value())
        return CheckRow("Discord", True, f"logged in as {user['username']}")
    except discord.LoginFailure:
        return CheckRow(
            "Discord",
            False,
            "token refused",
            fix="Copy DISCORD_TOKEN again from the developer portal (Bot, Reset Token).",
        )
    except (aiohttp.ClientError, OSError, discord.HTTPException) as exc:
        return CheckRow(
            "Discord", False, "unreachable", fix=f"Check this machine's network and DNS ({type(exc).__name__})."
        )
    finally:
        await http.close()


async def check_providers(settings: Settings, session: aiohttp.ClientSession) -> list[CheckRow]:
    providers = build_providers(settings, session)
    rows: list[CheckRow] = []
    for name, label in PROVIDER_NAMES.items():
        variable = f"{name.upper()}_API_KEY"
        provider = providers.get(name)
        if provider is None:
            rows.append(CheckRow(label, True, "disabled", fix=f"Set {variable} to enable it."))
            continue
        try:
            result = await provider.check()
        except CredentialsRefused:
            rows.append(
                CheckRow(
                    label, False, "key refused", fix=f"{variable} was refused; copy it again from {label}'s console."
                )
            )
        except ProviderUnavailable as exc:
            url = getattr(settings, f"{name}_base_url")
            rows.append(
                CheckRow(
                    label,
                    False,
                    "unreachable",
                    fix=f"{url} did not answer ({exc.message}); check {name.upper()}_BASE_URL.",
                )
            )
        except ProviderError as exc:
            rows.append(CheckRow(label, False, "refused", fix=exc.message))
        else:
            credits = "" if result.credits is None else f"{result.credits:g}"
            rows.append(CheckRow(label, True, result.detail, credits=credits))
    if not providers:
        rows.append(
            CheckRow(
                "Providers",
                False,
                "none enabled",
                fix="Set at least one of HIDREAM_API_KEY, PIXVERSE_API_KEY, VIDU_API_KEY.",
            )
        )
    return rows


async def run_checks(settings: Settings) -> list[CheckRow]:
    async with aiohttp.ClientSession() as session:
        return [await check_discord(settings), *await check_providers(settings, session)]


def render(rows: list[CheckRow]) -> str:
    """A plain table: what, status, credits, and the fix where something is wrong."""
    header = ("", "service", "status", "credits", "fix")
    lines = [(("ok" if row.ok else "FAIL"), row.name, row.status, row.credits, row.fix) for row in rows]
    widths = [max(len(line[column]) for line in [header, *lines]) for column in range(4)]
    out = []
    for line in [header, *lines]:
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths, strict=True)) + "  " + line[4])
    return "\n".join(text.rstrip() for text in out)

"""``python -m bot check``: prove the configuration and every credential with the cheapest real call."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiohttp
import discord

from bot.callbacks import CALLBACK_PATH, PROBE_HEADER, CallbackListener, callback_url
from bot.config import Settings
from bot.providers import PROVIDER_NAMES, build_providers
from bot.store import TaskReport
from providers import CallbackNews
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


async def check_callbacks(settings: Settings, session: aiohttp.ClientSession) -> CheckRow:
    """Whether PUBLIC_URL reaches this bot's callback listener, asked from here, as a provider would."""
    providers = build_providers(settings, session)
    calling = [name for name, provider in providers.items() if provider.calls_back]
    if not settings.public_url:
        if calling:
            return CheckRow(
                "Callbacks",
                True,
                "PixVerse webhook only",
                fix=f"Set PUBLIC_URL too, so this check can reach {CALLBACK_PATH.format(provider='pixverse')}.",
            )
        return CheckRow(
            "Callbacks", True, "off: jobs are polled", fix="Set PUBLIC_URL so that HiDream and Vidu call back."
        )
    if not calling:
        return CheckRow("Callbacks", True, "no provider calls back", fix="Enable HiDream or Vidu to use PUBLIC_URL.")
    name = calling[0]
    url = callback_url(settings.public_url, name)
    listener = CallbackListener(providers, _no_report, host=settings.callback_host, port=settings.callback_port)
    # When the port is taken, it is most likely by the running bot's own listener, which answers the probe.
    with contextlib.suppress(OSError):
        await listener.start()
    try:
        async with session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)) as response:
            answered = response.headers.get(PROBE_HEADER)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return CheckRow(
            "Callbacks",
            False,
            "unreachable",
            fix=f"{url} did not answer ({type(exc).__name__}); point PUBLIC_URL (or your reverse proxy) at "
            f"CALLBACK_PORT {settings.callback_port}.",
        )
    finally:
        await listener.stop()
    if answered != name:
        return CheckRow(
            "Callbacks",
            False,
            f"HTTP {status} from something else",
            fix=f"{url} is not this bot's callback listener; route {CALLBACK_PATH.format(provider='*')} under "
            f"PUBLIC_URL to CALLBACK_PORT {settings.callback_port}.",
        )
    return CheckRow("Callbacks", True, f"{settings.public_url} reaches the listener ({', '.join(calling)})")


async def _no_report(provider: str, news: CallbackNews) -> TaskReport:
    # A probe is a GET; a POST reaching this short-lived listener is not a job's callback to act on.
    return TaskReport()


async def run_checks(settings: Settings) -> list[CheckRow]:
    async with aiohttp.ClientSession() as session:
        return [
            await check_discord(settings),
            *await check_providers(settings, session),
            await check_callbacks(settings, session),
        ]


def render(rows: list[CheckRow]) -> str:
    """A plain table: what, status, credits, and the fix where something is wrong."""
    header = ("", "service", "status", "credits", "fix")
    lines = [(("ok" if row.ok else "FAIL"), row.name, row.status, row.credits, row.fix) for row in rows]
    widths = [max(len(line[column]) for line in [header, *lines]) for column in range(4)]
    out = []
    for line in [header, *lines]:
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths, strict=True)) + "  " + line[4])
    return "\n".join(text.rstrip() for text in out)

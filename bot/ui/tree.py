"""The command tree: where every command's error becomes one sentence for the user, and where the
bot stops taking commands while it closes."""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot.errors import UserError
from bot.i18n import mark, translate
from bot.ui.intake import InterruptedByStop
from bot.ui.language import member_language
from bot.ui.presenter import CardNotOpened

log = logging.getLogger(__name__)


#: What sending a reply can fail with: Discord refusing it, the network, or (RuntimeError) the HTTP
#: session closed under the reply while the bot stops.
_UNREACHABLE = (discord.HTTPException, aiohttp.ClientError, RuntimeError)


#: Discord's names for the permissions a command can require, as its client shows them.
PERMISSION_NAMES = {
    "manage_guild": mark("Manage Server"),
    "manage_messages": mark("Manage Messages"),
    "manage_channels": mark("Manage Channels"),
    "send_messages": mark("Send Messages"),
    "embed_links": mark("Embed Links"),
    "attach_files": mark("Attach Files"),
    "read_message_history": mark("Read Message History"),
    "view_channel": mark("View Channels"),
}
#: What an option of each type needs, when discord.py could not turn the value Discord sent into it.
OPTION_NEEDS = {
    discord.AppCommandOptionType.channel: mark(
        "`{option}` needs a channel of this server; pick one from the list Discord offers."
    ),
    discord.AppCommandOptionType.user: mark(
        "`{option}` needs a member of this server; pick one from the list Discord offers."
    ),
    discord.AppCommandOptionType.role: mark(
        "`{option}` needs a role of this server; pick one from the list Discord offers."
    ),
    discord.AppCommandOptionType.mentionable: mark(
        "`{option}` needs a member or a role of this server; pick one from the list Discord offers."
    ),
    discord.AppCommandOptionType.attachment: mark("`{option}` needs a file; attach it again."),
}


class JobTree(app_commands.CommandTree[Any]):
    """discord.py's tree with the bot's error handling and a switch that refuses work while closing."""

    closing = False

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        return not self.closing

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        await reply_error(interaction, error)


async def reply_error(interaction: discord.Interaction[Any], error: Exception) -> None:
    """The one way errors reach users: their own mistakes in a sentence, anything else as an apology with an id."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(original, CardNotOpened):
        await _reply_job_exists(interaction, original)
        return
    if isinstance(original, InterruptedByStop):
        log.info("%s", original)
        return
    language = member_language(interaction)
    if isinstance(original, UserError):
        text = original.text(language)
    elif isinstance(original, app_commands.CheckFailure):
        text = check_failure_text(original, language)
    elif isinstance(original, app_commands.TransformerError):
        text = transformer_error_text(original, interaction, language)
    else:
        error_id = secrets.token_hex(4)
        log.error("Error %s in an interaction", error_id, exc_info=original)
        text = translate(
            language,
            "Sorry, something went wrong on our side (error id {error_id}). Please try again in a moment.",
            error_id=error_id,
        )
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
            return
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # The public "thinking" message would otherwise stay; the explanation is for the user alone.
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)
    except _UNREACHABLE as exc:
        log.warning("Could not tell the user about an error (%s)", exc)


def check_failure_text(error: app_commands.CheckFailure, language: str) -> str:
    """discord.py's refusal of a command's check, as one sentence in the member's language."""
    if isinstance(error, app_commands.NoPrivateMessage):
        return translate(language, "This command works only in a server, not in direct messages.")
    if isinstance(error, app_commands.MissingPermissions):
        return translate(
            language,
            "You need the {permissions} permission to use this command.",
            permissions=_permissions(error.missing_permissions, language),
        )
    if isinstance(error, app_commands.BotMissingPermissions):
        return translate(
            language,
            "The bot needs the {permissions} permission here; ask someone who manages this server to grant it.",
            permissions=_permissions(error.missing_permissions, language),
        )
    if isinstance(error, app_commands.MissingRole | app_commands.MissingAnyRole):
        return translate(language, "You do not have a role this command needs.")
    if isinstance(error, app_commands.CommandOnCooldown):
        return translate(
            language,
            "You are using this command too often; try again in {seconds} s.",
            seconds=math.ceil(error.retry_after),
        )
    return translate(language, "You cannot use this command here.")


def transformer_error_text(
    error: app_commands.TransformerError, interaction: discord.Interaction[Any], language: str
) -> str:
    """discord.py could not turn an option's value into what the command takes: which option, and what it needs."""
    option = next((name for name, value in interaction.namespace if value is error.value), None)
    needs = OPTION_NEEDS.get(error.type)
    if option is None:
        return translate(language, "One of the options got a value it cannot use; pick it again from Discord's list.")
    if needs is None:
        return translate(
            language, "`{option}` cannot use the value it got; pick it again from Discord's list.", option=option
        )
    return translate(language, needs, option=option)


def _permissions(names: list[str], language: str) -> str:
    return ", ".join(
        translate(language, PERMISSION_NAMES[name])
        if name in PERMISSION_NAMES
        else name.replace("_", " ").replace("guild", "server").title()
        for name in names
    )


async def _reply_job_exists(interaction: discord.Interaction[Any], error: CardNotOpened) -> None:
    """The job is queued and will be billed: say so where its card will appear, and never ask for a second try."""
    error_id = secrets.token_hex(4)
    log.error("Error %s while opening the card of job %s", error_id, error.job_id, exc_info=error.__cause__)
    text = translate(
        member_language(interaction),
        "Job {job_id} was created and is queued; its card will appear in this message. "
        "There is no need to start it again (error id {error_id}).",
        job_id=error.job_id,
        error_id=error_id,
    )
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except _UNREACHABLE as exc:
        log.warning("Could not tell the user that job %s exists (%s)", error.job_id, exc)

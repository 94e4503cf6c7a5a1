"""The command tree: where every command's error becomes one sentence for the user, and where the
bot stops taking commands while it closes."""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot.errors import UserError
from bot.i18n import translate
from bot.ui.intake import InterruptedByStop
from bot.ui.language import member_language
from bot.ui.presenter import CardNotOpened

log = logging.getLogger(__name__)


#: What sending a reply can fail with: Discord refusing it, the network, or (RuntimeError) the HTTP
#: session closed under the reply while the bot stops.
_UNREACHABLE = (discord.HTTPException, aiohttp.ClientError, RuntimeError)


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
    elif isinstance(original, app_commands.CheckFailure | app_commands.TransformerError):
        text = str(original)
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

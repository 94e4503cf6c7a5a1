"""What the command and button handlers share: who asked, attachment checks, starting a job, replying."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import UserError
from bot.jobs.admission import admit
from bot.jobs.service import Requester
from bot.store import Admission, Job
from providers import Capabilities, Operation
from providers.media import VideoLimits, format_size

if TYPE_CHECKING:
    from bot.ui.app import AnimateBot

log = logging.getLogger(__name__)

#: Discord's interaction token lives 15 minutes from the interaction.
TOKEN_LIFETIME = timedelta(minutes=15)
#: The largest image the bot downloads to prepare; bigger ones are refused before downloading.
MAX_IMAGE_DOWNLOAD = 50 * 1024 * 1024
VIDEO_TYPES = ("video/mp4", "video/quicktime")


def bot_of(interaction: discord.Interaction[Any]) -> AnimateBot:
    return interaction.client  # type: ignore[no-any-return]


def requester(interaction: discord.Interaction[Any], message_id: int | None) -> Requester:
    return Requester(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        user_id=interaction.user.id,
        message_id=message_id,
        application_id=interaction.application_id,
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at + TOKEN_LIFETIME,
        upload_limit=interaction.filesize_limit,
    )


def attachment_problems(attachment: discord.Attachment, operation: Operation, caps: Capabilities) -> list[str]:
    """What the attachment's metadata already shows to be wrong, as sentences."""
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    if operation is Operation.STYLIZE:
        limit = caps.media.max_bytes if isinstance(caps.media, VideoLimits) else MAX_IMAGE_DOWNLOAD
        problems = []
        if kind and kind not in VIDEO_TYPES:
            problems.append(f"`{attachment.filename}` is not an MP4 video; attach an MP4 to restyle.")
        if attachment.size > limit:
            problems.append(
                f"`{attachment.filename}` is {format_size(attachment.size)}; attach a video under {format_size(limit)}."
            )
        return problems
    problems = []
    if kind and not kind.startswith("image/"):
        problems.append(f"`{attachment.filename}` is not an image; attach a PNG, JPEG or WebP picture.")
    if attachment.size > MAX_IMAGE_DOWNLOAD:
        problems.append(
            f"`{attachment.filename}` is {format_size(attachment.size)}; attach an image under "
            f"{format_size(MAX_IMAGE_DOWNLOAD)}."
        )
    return problems


async def start_job(
    interaction: discord.Interaction[Any],
    provider_name: str,
    operation: Operation,
    attachment: discord.Attachment,
    options: Mapping[str, Any],
) -> Job:
    """The path of every /animate and /stylize: check, defer, read the bytes, create the job, show its card."""
    bot = bot_of(interaction)
    params = {name: value for name, value in options.items() if value is not None}
    provider = bot.jobs.provider(provider_name)
    problems = provider.validate(operation, params) + attachment_problems(
        attachment, operation, provider.capabilities[operation]
    )
    if problems:
        raise UserError(" ".join(problems))
    admission = await admit_member(interaction, provider_name)
    await interaction.response.defer(thinking=True)
    original = await interaction.original_response()
    data = await attachment.read()
    job = await bot.jobs.create(
        requester(interaction, original.id), provider_name, operation, params, data, admission=admission
    )
    await bot.presenter.open_card(job)
    return job


async def admit_member(interaction: discord.Interaction[Any], provider_name: str) -> Admission:
    """The server's rules for who may start a job where (raises UserError before anything is created);
    returns the limits the job's write checks again."""
    bot = bot_of(interaction)
    return await admit(
        bot.store,
        bot.settings,
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        provider=provider_name,
        now=bot.now(),
    )


async def start_card(interaction: discord.Interaction[Any]) -> Requester:
    """Defer publicly and return who asked, with the message that becomes the new job's card."""
    await interaction.response.defer(thinking=True)
    original = await interaction.original_response()
    return requester(interaction, original.id)


def can_manage(interaction: discord.Interaction[Any], job: Job) -> bool:
    """The job's owner, or a member who may manage messages in the channel."""
    if interaction.user.id == job.user_id:
        return True
    permissions = getattr(interaction, "permissions", None)
    return bool(permissions and permissions.manage_messages)

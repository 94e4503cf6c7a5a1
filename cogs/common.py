"""What the command and button handlers share: who asked, attachment checks, starting a job, replying."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord

from bot.downloads import fetch
from bot.errors import ProblemsError, UserError
from bot.jobs.admission import admit
from bot.store import Admission, Intake, IntakeKind, Job
from bot.ui.intake import AttachmentRef, requester_of
from providers import Capabilities, Operation
from providers.media import VideoLimits, format_size

if TYPE_CHECKING:
    from bot.ui.app import AnimateBot

log = logging.getLogger(__name__)

#: The largest image the bot downloads to prepare; bigger ones are refused before downloading.
MAX_IMAGE_DOWNLOAD = 50 * 1024 * 1024
VIDEO_TYPES = ("video/mp4", "video/quicktime")


def bot_of(interaction: discord.Interaction[Any]) -> AnimateBot:
    return interaction.client  # type: ignore[no-any-return]


def upload_limit(operation: Operation, caps: Capabilities) -> int:
    """The largest attachment the bot reads for this operation."""
    if operation is Operation.STYLIZE and isinstance(caps.media, VideoLimits):
        return caps.media.max_bytes
    return MAX_IMAGE_DOWNLOAD


def attachment_problems(attachment: AttachmentRef, operation: Operation, caps: Capabilities) -> list[UserError]:
    """What the attachment's metadata already shows to be wrong, one sentence each."""
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    if operation is Operation.STYLIZE:
        limit = upload_limit(operation, caps)
        problems = []
        if kind and kind not in VIDEO_TYPES:
            problems.append(
                UserError("`{file}` is not an MP4 video; attach an MP4 to restyle.", file=attachment.filename)
            )
        if attachment.size > limit:
            problems.append(
                UserError(
                    "`{file}` is {size}; attach a video under {limit}.",
                    file=attachment.filename,
                    size=format_size(attachment.size),
                    limit=format_size(limit),
                )
            )
        return problems
    problems = []
    if kind and not kind.startswith("image/"):
        problems.append(
            UserError("`{file}` is not an image; attach a PNG, JPEG or WebP picture.", file=attachment.filename)
        )
    if attachment.size > MAX_IMAGE_DOWNLOAD:
        problems.append(
            UserError(
                "`{file}` is {size}; attach an image under {limit}.",
                file=attachment.filename,
                size=format_size(attachment.size),
                limit=format_size(MAX_IMAGE_DOWNLOAD),
            )
        )
    return problems


async def start_job(
    interaction: discord.Interaction[Any],
    provider_name: str,
    operation: Operation,
    attachment: AttachmentRef,
    options: Mapping[str, Any],
) -> Job:
    """The path of every /animate and /stylize: check, record, defer, read the bytes, create the job, show its card."""
    bot = bot_of(interaction)
    params = {name: value for name, value in options.items() if value is not None}
    provider = bot.jobs.provider(provider_name)
    caps = provider.capabilities[operation]
    problems = provider.validate(operation, params)
    found = attachment_problems(attachment, operation, caps)
    if problems or found:
        raise ProblemsError([*problems, *found])
    admission = await admit_member(interaction, provider_name)
    intake = await bot.intakes.record(
        interaction, IntakeKind.COMMAND, provider_name, operation.value, params, attachment=attachment
    )
    async with bot.intakes.working(intake):
        intake = await start_card(interaction, intake)
        data = await read_attachment(interaction, attachment, upload_limit(operation, caps))
        await bot.intakes.keep_upload(intake, data)
        job = await bot.jobs.create(
            requester_of(intake),
            provider_name,
            operation,
            params,
            data,
            admission=admission,
            intake_id=intake.interaction_id,
        )
        bot.intakes.discard_upload(intake)
        await bot.presenter.open_card(job)
    return job


async def read_attachment(interaction: discord.Interaction[Any], attachment: AttachmentRef, limit: int) -> bytes:
    fetched = await fetch(bot_of(interaction).jobs.session, attachment.url, max_bytes=limit)
    if fetched.too_large:
        raise UserError(
            "`{file}` is larger than {limit}; attach a smaller file.",
            file=attachment.filename,
            limit=format_size(limit),
        )
    if fetched.data is None:
        raise UserError("`{file}` could not be read from Discord; attach it again.", file=attachment.filename)
    return fetched.data


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


async def start_card(interaction: discord.Interaction[Any], intake: Intake) -> Intake:
    """Defer publicly (the intake is already recorded); the "thinking" message becomes the new job's card."""
    callback = await interaction.response.defer(thinking=True)
    message_id = callback.message_id if callback is not None else None
    if message_id is None:
        message_id = (await interaction.original_response()).id
    return await bot_of(interaction).intakes.acknowledged(intake, message_id)


async def start_again(
    interaction: discord.Interaction[Any], source: Job, kind: IntakeKind, params: Mapping[str, Any]
) -> Job:
    """Retry, Reroll or Stylize a job from its card: record, defer, create the new job, show its card."""
    bot = bot_of(interaction)
    provider = "hidream" if kind is IntakeKind.STYLIZE else source.provider
    operation = Operation.STYLIZE.value if kind is IntakeKind.STYLIZE else source.operation
    admission = await admit_member(interaction, provider)
    intake = await bot.intakes.record(interaction, kind, provider, operation, params, source_job_id=source.id)
    async with bot.intakes.working(intake):
        intake = await start_card(interaction, intake)
        who = requester_of(intake)
        if kind is IntakeKind.STYLIZE:
            job = await bot.jobs.stylize(
                source, who, str(params["style"]), admission=admission, intake_id=intake.interaction_id
            )
        else:
            job = await bot.jobs.again(
                source,
                who,
                new_seed=kind is IntakeKind.REROLL,
                admission=admission,
                intake_id=intake.interaction_id,
            )
        await bot.presenter.open_card(job)
    return job


def can_manage(interaction: discord.Interaction[Any], job: Job) -> bool:
    """The job's owner, or a member who may manage messages in the channel."""
    if interaction.user.id == job.user_id:
        return True
    permissions = getattr(interaction, "permissions", None)
    return bool(permissions and permissions.manage_messages)

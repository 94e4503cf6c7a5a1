"""/jobs list|show|cancel, and what the buttons on job cards do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from bot.errors import ProblemsError, UserError
from bot.i18n import mark, translate
from bot.i18n.sentences import localized_all
from bot.jobs.scheduler import JobNotCancellable
from bot.store import IntakeKind, Job, JobState
from bot.ui import cards
from bot.ui.buttons import StyleMenu
from bot.ui.intake import AttachmentRef
from bot.ui.language import member_language
from bot.ui.tree import reply_error
from cogs.common import bot_of, can_manage, start_again, start_job
from providers import Operation

if TYPE_CHECKING:
    from bot.ui.app import AnimateBot

LIST_LIMIT = 10
#: Who may press a card's paid buttons; the sentence per action.
OWNER_ONLY = {
    "reroll": mark("Only the person who started job {job_id}, or someone who can manage messages, can reroll it."),
    "retry": mark("Only the person who started job {job_id}, or someone who can manage messages, can retry it."),
    "restyle": mark("Only the person who started job {job_id}, or someone who can manage messages, can restyle it."),
}
JOB_ID_HELP = locale_str("The job's number, from its card or /jobs list.")


async def find_job(interaction: discord.Interaction[Any], job_id: int) -> Job:
    """A job the caller may see: one from this server (or their own, in DMs)."""
    job = await bot_of(interaction).store.get_job(job_id)
    visible = job is not None and (
        job.user_id == interaction.user.id or (job.guild_id is not None and job.guild_id == interaction.guild_id)
    )
    if job is None or not visible:
        raise UserError("There is no job {job_id} here; `/jobs list` shows yours.", job_id=job_id)
    return job


async def cancel_job(interaction: discord.Interaction[Any], job: Job) -> str:
    """Cancel the job; the answer, for the member alone, in their language."""
    language = member_language(interaction)
    if not can_manage(interaction, job):
        raise UserError(
            "Only the person who started job {job_id}, or someone who can manage messages, can cancel it.",
            job_id=job.id,
        )
    try:
        cancelled = await bot_of(interaction).scheduler.cancel(job.id)
    except JobNotCancellable as exc:
        raise ProblemsError([str(exc)]) from None
    if cancelled.state is JobState.SUBMITTING:
        return translate(
            language, "Job {job_id} is being sent; it will be cancelled as soon as the provider answers.", job_id=job.id
        )
    if cancelled.error_reason:
        return localized_all(language, cancelled.error_reason)
    return translate(language, "Job {job_id} was cancelled.", job_id=job.id)


class Jobs(app_commands.Group, name="jobs", description=locale_str("Your video jobs.")):
    """See, show again and cancel jobs."""

    @app_commands.command(name="list", description=locale_str("Your recent jobs with their state and links."))
    async def list_jobs(self, interaction: discord.Interaction[Any]) -> None:
        language = member_language(interaction)
        jobs = await bot_of(interaction).store.jobs_of_user(interaction.user.id, limit=LIST_LIMIT)
        if not jobs:
            text = translate(language, "You have no jobs yet; start one with `/animate`.")
            await interaction.response.send_message(text, ephemeral=True)
            return
        lines = []
        for job in jobs:
            icon, words = cards.STATE_LINES[job.state]
            words = translate(language, words)
            link = " · [{}]({})".format(translate(language, "video"), job.video_url) if job.video_url else ""
            price = cards.cost(job, language)
            cost = f" · {price}" if price else ""
            title = cards.title(job, language)
            lines.append(f"`{job.id}` {title} · {icon} {words}{cost} · <t:{int(job.created_at.timestamp())}:R>{link}")
        # i18n: embed title
        embed = discord.Embed(title=translate(language, "Your recent jobs"), description="\n".join(lines))
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="show", description=locale_str("Show a job's card again, with its buttons."))
    @app_commands.describe(job_id=JOB_ID_HELP)
    async def show(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        bot = bot_of(interaction)
        job = await find_job(interaction, job_id)
        # An ephemeral copy of the card: the member's language, not the job's.
        language = member_language(interaction)
        eta = cards.estimate(job, None, discord.utils.utcnow())
        embed = cards.card(job, eta, thumbnail=False, language=language)
        view = cards.buttons(job, can_stylize="hidream" in bot.providers, language=language)
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)

    @app_commands.command(name="cancel", description=locale_str("Cancel a job that has not finished."))
    @app_commands.describe(job_id=JOB_ID_HELP)
    async def cancel(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await find_job(interaction, job_id)
        await interaction.response.send_message(await cancel_job(interaction, job), ephemeral=True)


class CardActions(commands.Cog):
    """What the buttons and menus on job cards do (bot/ui/buttons.py dispatches their clicks)."""

    @commands.Cog.listener()
    async def on_card_button(self, interaction: discord.Interaction[Any], action: str, job_id: int) -> None:
        try:
            job = await find_job(interaction, job_id)
            if action == "cancel":
                await interaction.response.send_message(await cancel_job(interaction, job), ephemeral=True)
            elif action == "stylize":
                await self._offer_styles(interaction, job)
            else:
                await self._again(interaction, job, reroll=action == "reroll")
        except Exception as exc:
            await reply_error(interaction, exc)

    @commands.Cog.listener()
    async def on_card_style(self, interaction: discord.Interaction[Any], job_id: int, style: str) -> None:
        try:
            job = await find_job(interaction, job_id)
            self._check_owner(interaction, job, "restyle")
            if job.state is not JobState.SUCCEEDED or not job.video_url:
                raise UserError("Job {job_id} has no finished video to restyle.", job_id=job.id)
            bot_of(interaction).jobs.check("hidream", Operation.STYLIZE, {"style": style})
            await start_again(interaction, job, IntakeKind.STYLIZE, {"style": style})
        except Exception as exc:
            await reply_error(interaction, exc)

    @commands.Cog.listener()
    async def on_intake_retry(self, interaction: discord.Interaction[Any], interaction_id: int) -> None:
        try:
            intake = await bot_of(interaction).store.get_intake(interaction_id)
            if intake is None or intake.attachment_url is None or intake.attachment_name is None:
                raise UserError("That request is no longer kept; run the command again with the file attached.")
            if interaction.user.id != intake.user_id:
                raise UserError("Only the person who ran that command can start it again.")
            attachment = AttachmentRef(
                intake.attachment_url, intake.attachment_name, intake.attachment_type, intake.attachment_size or 0
            )
            await start_job(interaction, intake.provider, Operation(intake.operation), attachment, intake.params)
        except Exception as exc:
            await reply_error(interaction, exc)

    async def _again(self, interaction: discord.Interaction[Any], job: Job, *, reroll: bool) -> None:
        self._check_owner(interaction, job, "reroll" if reroll else "retry")
        if reroll and job.state is not JobState.SUCCEEDED:
            raise UserError("Job {job_id} has not finished; Reroll works on a finished video.", job_id=job.id)
        if not reroll and not job.state.finished:
            raise UserError("Job {job_id} has not finished; Retry works on a finished job.", job_id=job.id)
        await start_again(interaction, job, IntakeKind.REROLL if reroll else IntakeKind.RETRY, {})

    async def _offer_styles(self, interaction: discord.Interaction[Any], job: Job) -> None:
        self._check_owner(interaction, job, "restyle")
        if job.state is not JobState.SUCCEEDED:
            raise UserError("Job {job_id} has no finished video to restyle.", job_id=job.id)
        language = member_language(interaction)
        view = discord.ui.View(timeout=None)
        view.add_item(StyleMenu(job.id, language))
        text = translate(language, "Pick a style for the new video:")
        await interaction.response.send_message(text, view=view, ephemeral=True)

    @staticmethod
    def _check_owner(interaction: discord.Interaction[Any], job: Job, what: str) -> None:
        # These start paid jobs, so they follow the same rule as cancel.
        if not can_manage(interaction, job):
            raise UserError(OWNER_ONLY[what], job_id=job.id)


async def setup(bot: AnimateBot) -> None:
    bot.tree.add_command(Jobs())
    await bot.add_cog(CardActions())

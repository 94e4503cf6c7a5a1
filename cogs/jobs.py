"""/jobs list|show|cancel, and what the buttons on job cards do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from bot.errors import UserError
from bot.jobs.scheduler import JobNotCancellable
from bot.store import IntakeKind, Job, JobState
from bot.ui import cards
from bot.ui.buttons import StyleMenu
from bot.ui.intake import AttachmentRef
from bot.ui.tree import reply_error
from cogs.common import bot_of, can_manage, start_again, start_job
from providers import Operation

if TYPE_CHECKING:
    from bot.ui.app import AnimateBot

LIST_LIMIT = 10
JOB_ID_HELP = locale_str("The job's number, from its card or /jobs list.")


async def find_job(interaction: discord.Interaction[Any], job_id: int) -> Job:
    """A job the caller may see: one from this server (or their own, in DMs)."""
    job = await bot_of(interaction).store.get_job(job_id)
    visible = job is not None and (
        job.user_id == interaction.user.id or (job.guild_id is not None and job.guild_id == interaction.guild_id)
    )
    if job is None or not visible:
        raise UserError(f"There is no job {job_id} here; `/jobs list` shows yours.")
    return job


async def cancel_job(interaction: discord.Interaction[Any], job: Job) -> str:
    if not can_manage(interaction, job):
        raise UserError(f"Only the person who started job {job.id}, or someone who can manage messages, can cancel it.")
    try:
        cancelled = await bot_of(interaction).scheduler.cancel(job.id)
    except JobNotCancellable as exc:
        raise UserError(str(exc)) from None
    if cancelled.state is JobState.SUBMITTING:
        return f"Job {job.id} is being sent; it will be cancelled as soon as the provider answers."
    return cancelled.error_reason or f"Job {job.id} was cancelled."


class Jobs(app_commands.Group, name="jobs", description=locale_str("Your video jobs.")):
    """See, show again and cancel jobs."""

    @app_commands.command(name="list", description=locale_str("Your recent jobs with their state and links."))
    async def list_jobs(self, interaction: discord.Interaction[Any]) -> None:
        jobs = await bot_of(interaction).store.jobs_of_user(interaction.user.id, limit=LIST_LIMIT)
        if not jobs:
            await interaction.response.send_message("You have no jobs yet; start one with `/animate`.", ephemeral=True)
            return
        lines = []
        for job in jobs:
            icon, words = cards.STATE_LINES[job.state]
            link = f" · [video]({job.video_url})" if job.video_url else ""
            price = cards.cost(job)
            cost = f" · {price}" if price else ""
            lines.append(
                f"`{job.id}` {cards.title(job)} · {icon} {words}{cost} · <t:{int(job.created_at.timestamp())}:R>{link}"
            )
        embed = discord.Embed(title="Your recent jobs", description="\n".join(lines))
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="show", description=locale_str("Show a job's card again, with its buttons."))
    @app_commands.describe(job_id=JOB_ID_HELP)
    async def show(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        bot = bot_of(interaction)
        job = await find_job(interaction, job_id)
        eta = cards.estimate(job, None, discord.utils.utcnow())
        embed = cards.card(job, eta, thumbnail=False)
        await interaction.response.send_message(
            embed=embed, view=cards.buttons(job, can_stylize="hidream" in bot.providers), ephemeral=True
        )

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
                raise UserError(f"Job {job.id} has no finished video to restyle.")
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
        what = "reroll" if reroll else "retry"
        self._check_owner(interaction, job, what)
        if reroll and job.state is not JobState.SUCCEEDED:
            raise UserError(f"Job {job.id} has not finished; Reroll works on a finished video.")
        if not reroll and not job.state.finished:
            raise UserError(f"Job {job.id} has not finished; Retry works on a finished job.")
        await start_again(interaction, job, IntakeKind.REROLL if reroll else IntakeKind.RETRY, {})

    async def _offer_styles(self, interaction: discord.Interaction[Any], job: Job) -> None:
        self._check_owner(interaction, job, "restyle")
        if job.state is not JobState.SUCCEEDED:
            raise UserError(f"Job {job.id} has no finished video to restyle.")
        view = discord.ui.View(timeout=None)
        view.add_item(StyleMenu(job.id))
        await interaction.response.send_message("Pick a style for the new video:", view=view, ephemeral=True)

    @staticmethod
    def _check_owner(interaction: discord.Interaction[Any], job: Job, what: str) -> None:
        # These start paid jobs, so they follow the same rule as cancel.
        if not can_manage(interaction, job):
            raise UserError(
                f"Only the person who started job {job.id}, or someone who can manage messages, can {what} it."
            )


async def setup(bot: AnimateBot) -> None:
    bot.tree.add_command(Jobs())
    await bot.add_cog(CardActions())

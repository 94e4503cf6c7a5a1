"""What a job looks like on Discord: the card's embed and buttons, built from the ledger's job.

Only the presenter sends these; this module just draws them. An estimate from the provider's progress is a
Discord timestamp (``<t:…:R>``), which every client keeps current. Without a percentage from the provider, the
card counts down the minutes that earlier jobs like it took ("About 4 min left"), so the presenter draws it
again as time passes, even when the provider is asked only every few minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import discord

from bot.jobs.admission import credits_text
from bot.providers import PROVIDER_NAMES
from bot.store import Job, JobState
from bot.ui.buttons import JobButton

PROMPT_PREVIEW = 300
BAR_CELLS = 12
INPUT_THUMBNAIL = "input"
#: Discord refuses a link button whose url is longer (developers/components/reference).
MAX_BUTTON_URL = 512
#: Below this a provider's percentage says too little to reckon the end from; earlier jobs' run times do.
MIN_PROGRESS = 0.05

#: The options worth a glance on the card, per provider, in order.
SHOWN_OPTIONS = {
    "hidream": ("resolution", "motion_strength", "camera_horizontal", "camera_vertical", "camera_depth", "style"),
    "pixverse": ("duration", "quality", "motion_mode", "camera_movement", "style", "seed", "audio"),
    "vidu": ("duration", "resolution", "movement_amplitude", "seed", "audio", "off_peak"),
}
STATE_LINES = {
    JobState.QUEUED: ("⏳", "Waiting for its turn"),
    JobState.SUBMITTING: ("📤", "Sending to the provider"),
    JobState.RUNNING: ("🎬", "Generating"),
    JobState.SUCCEEDED: ("✅", "Done"),
    JobState.FAILED: ("❌", "Failed"),
    JobState.REJECTED: ("🚫", "Refused by content review"),
    JobState.CANCELLED: ("🛑", "Cancelled"),
    JobState.TIMED_OUT: ("⌛", "Timed out"),
}
COLOURS = {
    JobState.SUCCEEDED: discord.Colour.green(),
    JobState.FAILED: discord.Colour.red(),
    JobState.REJECTED: discord.Colour.dark_red(),
    JobState.CANCELLED: discord.Colour.light_grey(),
    JobState.TIMED_OUT: discord.Colour.orange(),
}
#: What a user can do after each bad ending.
NEXT_STEPS = {
    JobState.FAILED: "Press Retry to send it again with the same settings.",
    JobState.REJECTED: "Change the image or the prompt and start a new job; nothing was charged for the review.",
    JobState.TIMED_OUT: "Press Retry to send it again, or try another provider.",
    JobState.CANCELLED: "Press Retry to send it again.",
}


@dataclass(frozen=True)
class Estimate:
    """When the job should finish, if anything sensible can be said."""

    finish_at: datetime | None
    #: Seconds from the estimate's moment to the time earlier jobs like this one took (negative once past
    #: it); None when the estimate comes from the provider's progress, or there is none.
    typical_left: float | None = None


def title(job: Job) -> str:
    name = PROVIDER_NAMES.get(job.provider, job.provider)
    what = "restyle" if job.operation == "stylize" else "image to video"
    return f"{name} {job.model} · {what}" if job.model else f"{name} · {what}"


def progress_bar(progress: float) -> str:
    progress = max(0.0, min(1.0, progress))
    filled = round(progress * BAR_CELLS)
    return "▰" * filled + "▱" * (BAR_CELLS - filled) + f" {progress:.0%}"


def estimate(job: Job, median_seconds: float | None, now: datetime) -> Estimate:
    """From the provider's progress when it reports some, else from how long earlier jobs took."""
    if job.state is not JobState.RUNNING:
        return Estimate(None)
    started = job.started_at or job.accepted_at
    if job.progress and job.progress >= MIN_PROGRESS and started is not None:
        # Reckoned from when the percentage was reported, so that it holds still until the next one.
        reported = job.progress_at or now
        spent = (reported - started).total_seconds()
        return Estimate(reported + timedelta(seconds=spent * (1 - job.progress) / job.progress))
    if median_seconds and job.accepted_at is not None:
        finish = job.accepted_at + timedelta(seconds=median_seconds)
        return Estimate(finish, (finish - now).total_seconds())
    return Estimate(None)


def time_left(eta: Estimate) -> str | None:
    """The card's words for the time left when only earlier jobs say how long this one takes."""
    left = eta.typical_left
    if left is None:
        return None
    if left <= 0:
        return "Taking longer than usual"
    if left < 60:
        return "Less than a minute left"
    return f"About {math.ceil(left / 60)} min left"


def _stamp(moment: datetime, style: str = "R") -> str:
    return f"<t:{int(moment.timestamp())}:{style}>"


def signature(job: Job, eta: Estimate) -> tuple[object, ...]:
    """Everything visible on the card; the card is edited only when this changes."""
    progress = round(job.progress * BAR_CELLS) if job.progress is not None else None
    finish = round(eta.finish_at.timestamp() / 30) if eta.finish_at else None
    left = time_left(eta) if job.state is JobState.RUNNING else None
    checking = job.provider_status if job.state is JobState.SUBMITTING else None
    return (
        job.state,
        progress,
        job.queue_position,
        finish,
        left,
        job.error_reason,
        job.video_url,
        job.cover_url,
        checking,
        cost(job),
    )


def cost(job: Job) -> str | None:
    """What the job costs, as the card says it: the provider's figure once known, before that the estimate."""
    if job.credits is not None and job.state in (JobState.SUBMITTING, JobState.RUNNING, JobState.SUCCEEDED):
        return f"{credits_text(job.credits)} credits"
    if job.estimated_credits is not None and not job.state.finished:
        return f"about {credits_text(job.estimated_credits)} credits"
    return None


def card(job: Job, eta: Estimate, *, thumbnail: bool) -> discord.Embed:
    """The job's card as an embed."""
    icon, words = STATE_LINES[job.state]
    embed = discord.Embed(title=title(job), colour=COLOURS.get(job.state, discord.Colour.blurple()))
    prompt = str(job.params.get("prompt") or job.params.get("style") or "")
    if prompt:
        embed.description = prompt if len(prompt) <= PROMPT_PREVIEW else prompt[: PROMPT_PREVIEW - 1] + "…"
    lines = [f"{icon} **{words}**"]
    if job.state is JobState.QUEUED and job.queue_position:
        lines.append(f"Number {job.queue_position} in line")
    if job.state is JobState.SUBMITTING and job.provider_status:
        # The answer to the send was lost: the bot asks the provider before it would send again.
        lines.append(f"The answer was lost; {job.provider_status} before sending again")
    if job.state is JobState.RUNNING:
        if job.progress is not None:
            lines.append(progress_bar(job.progress))
        left = time_left(eta)
        if left is not None:
            lines.append(left)
        elif eta.finish_at is not None:
            lines.append(f"Expected {_stamp(eta.finish_at)}")
    if job.state.finished:
        if job.finished_at is not None:
            lines.append(f"Took {_duration((job.finished_at - job.created_at).total_seconds())}")
        if job.error_reason and job.state is not JobState.SUCCEEDED:
            lines.append(job.error_reason)
        step = NEXT_STEPS.get(job.state)
        if step:
            lines.append(step)
    else:
        lines.append(f"Started {_stamp(job.created_at)}")
    price = cost(job)
    if price:
        lines.append(f"Cost: {price}")
    embed.add_field(name="Status", value="\n".join(lines)[:1024], inline=False)
    for name in SHOWN_OPTIONS.get(job.provider, ()):
        value = job.params.get(name)
        if value is not None and value != "":
            embed.add_field(name=name.replace("_", " "), value=str(value)[:1024], inline=True)
    if job.state is JobState.SUCCEEDED and job.cover_url:
        embed.set_image(url=job.cover_url)
    if thumbnail:
        embed.set_thumbnail(url=f"attachment://{thumbnail_name(job)}")
    embed.set_footer(text=f"Job {job.id}")
    return embed


def thumbnail_name(job: Job) -> str:
    extension = str(job.media.get("thumbnail", "x.jpg")).rsplit(".", 1)[-1]
    return f"{INPUT_THUMBNAIL}.{extension}"


def card_text(job: Job) -> str | None:
    """The card's message text: the video link when it is too long for a link button, else nothing."""
    if job.state is JobState.SUCCEEDED and job.video_url and len(job.video_url) > MAX_BUTTON_URL:
        return f"Video (the provider's link expires): {job.video_url}"
    return None


def buttons(job: Job, *, can_stylize: bool) -> discord.ui.View:
    """The card's buttons for the job's state; their custom ids carry the job id, so they survive restarts."""
    view = discord.ui.View(timeout=None)
    if not job.state.finished:
        view.add_item(JobButton("cancel", job.id))
        return view
    if job.state is JobState.SUCCEEDED:
        if job.video_url and len(job.video_url) <= MAX_BUTTON_URL:
            view.add_item(discord.ui.Button(label="Open", style=discord.ButtonStyle.link, url=job.video_url))
        view.add_item(JobButton("reroll", job.id))
        if can_stylize:
            view.add_item(JobButton("stylize", job.id))
    else:
        view.add_item(JobButton("retry", job.id))
    return view


def announcement(job: Job, *, linked: bool, unfetched: bool = False, can_retry: bool = False) -> str:
    """The message that tells the user the job ended (it mentions them, so they are notified).

    ``linked``: the video is too large to upload, so the link is given; ``unfetched``: the video could
    not be fetched from the provider (its link expired or did not answer), so no link is given.
    """
    who = f"<@{job.user_id}>"
    if job.state is JobState.SUCCEEDED:
        if unfetched:
            again = "Press Retry to make it again." if can_retry else "Start a new job to make it again."
            return (
                f"{who} job {job.id} finished, but its video could not be fetched from the provider "
                f"(the link expired or did not answer). {again}"
            )
        message = f"{who} your video from job {job.id} is ready."
        if linked:
            message += f" It is too large to upload here, so here is the link (provider links expire): {job.video_url}"
        return message
    _, words = STATE_LINES[job.state]
    reason = f" {job.error_reason}" if job.error_reason else ""
    step = NEXT_STEPS.get(job.state, "")
    return f"{who} job {job.id}: {words.lower()}.{reason} {step}".strip()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def log_line(job: Job) -> str:
    """One line for a server's log channel."""
    _, words = STATE_LINES[job.state]
    took = f" in {_duration((job.finished_at - job.created_at).total_seconds())}" if job.finished_at else ""
    price = cost(job)
    credits = f" · {price}" if price else ""
    reason = f" · {job.error_reason}" if job.error_reason and job.state is not JobState.SUCCEEDED else ""
    return f"Job {job.id} · {title(job)} · <@{job.user_id}> · {words.lower()}{took}{credits}{reason}"

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

from bot.i18n import mark, translate
from bot.i18n.commands import is_word_choice
from bot.i18n.sentences import localized, localized_all
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
    JobState.QUEUED: ("⏳", mark("Waiting for its turn")),
    JobState.SUBMITTING: ("📤", mark("Sending to the provider")),
    JobState.RUNNING: ("🎬", mark("Generating")),
    JobState.SUCCEEDED: ("✅", mark("Done")),
    JobState.FAILED: ("❌", mark("Failed")),
    JobState.REJECTED: ("🚫", mark("Refused by content review")),
    JobState.CANCELLED: ("🛑", mark("Cancelled")),
    JobState.TIMED_OUT: ("⌛", mark("Timed out")),
}
#: How the announcement and the log line name each ending, inside a sentence.
STATE_WORDS = {
    JobState.QUEUED: mark("waiting for its turn"),
    JobState.SUBMITTING: mark("sending to the provider"),
    JobState.RUNNING: mark("generating"),
    JobState.SUCCEEDED: mark("done"),
    JobState.FAILED: mark("failed"),
    JobState.REJECTED: mark("refused by content review"),
    JobState.CANCELLED: mark("cancelled"),
    JobState.TIMED_OUT: mark("timed out"),
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
    JobState.FAILED: mark("Press Retry to send it again with the same settings."),
    JobState.REJECTED: mark("Change the image or the prompt and start a new job; nothing was charged for the review."),
    JobState.TIMED_OUT: mark("Press Retry to send it again, or try another provider."),
    JobState.CANCELLED: mark("Press Retry to send it again."),
}
#: The names of the options shown on the card.
OPTION_NAMES = {
    "resolution": mark("resolution"),
    "motion_strength": mark("motion strength"),
    "camera_horizontal": mark("camera horizontal"),
    "camera_vertical": mark("camera vertical"),
    "camera_depth": mark("camera depth"),
    "style": mark("style"),
    "duration": mark("duration"),
    "quality": mark("quality"),
    "motion_mode": mark("motion mode"),
    "camera_movement": mark("camera movement"),
    "seed": mark("seed"),
    "audio": mark("audio"),
    "movement_amplitude": mark("movement amplitude"),
    "off_peak": mark("off peak"),
}
#: The job number as every announcement and log line carries it; the presenter looks for it after a restart.
JOB_NUMBER = mark("job {job_id}")


@dataclass(frozen=True)
class Estimate:
    """When the job should finish, if anything sensible can be said."""

    finish_at: datetime | None
    #: Seconds from the estimate's moment to the time earlier jobs like this one took (negative once past
    #: it); None when the estimate comes from the provider's progress, or there is none.
    typical_left: float | None = None


def title(job: Job, language: str) -> str:
    name = PROVIDER_NAMES.get(job.provider, job.provider)
    # i18n: embed title
    what = translate(language, "restyle") if job.operation == "stylize" else translate(language, "image to video")
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


def time_left(eta: Estimate, language: str) -> str | None:
    """The card's words for the time left when only earlier jobs say how long this one takes."""
    left = eta.typical_left
    if left is None:
        return None
    if left <= 0:
        return translate(language, "Taking longer than usual")
    if left < 60:
        return translate(language, "Less than a minute left")
    return translate(language, "About {minutes} min left", minutes=math.ceil(left / 60))


def _stamp(moment: datetime, style: str = "R") -> str:
    return f"<t:{int(moment.timestamp())}:{style}>"


def signature(job: Job, eta: Estimate) -> tuple[object, ...]:
    """Everything visible on the card; the card is edited only when this changes."""
    progress = round(job.progress * BAR_CELLS) if job.progress is not None else None
    finish = round(eta.finish_at.timestamp() / 30) if eta.finish_at else None
    left = time_left(eta, job.language) if job.state is JobState.RUNNING else None
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
        cost(job, job.language),
    )


def cost(job: Job, language: str) -> str | None:
    """What the job costs, as the card says it: the provider's figure once known, before that the estimate."""
    if job.credits is not None and job.state in (JobState.SUBMITTING, JobState.RUNNING, JobState.SUCCEEDED):
        return translate(language, "{credits} credits", credits=credits_text(job.credits))
    if job.estimated_credits is not None and not job.state.finished:
        return translate(language, "about {credits} credits", credits=credits_text(job.estimated_credits))
    return None


def card(job: Job, eta: Estimate, *, thumbnail: bool, language: str | None = None) -> discord.Embed:
    """The job's card as an embed, in the job's language unless another is asked for (an ephemeral copy)."""
    lang = language or job.language
    icon, words = STATE_LINES[job.state]
    words = translate(lang, words)
    embed = discord.Embed(title=title(job, lang), colour=COLOURS.get(job.state, discord.Colour.blurple()))
    prompt = str(job.params.get("prompt") or job.params.get("style") or "")
    if prompt:
        embed.description = prompt if len(prompt) <= PROMPT_PREVIEW else prompt[: PROMPT_PREVIEW - 1] + "…"
    lines = [f"{icon} **{words}**"]
    if job.state is JobState.QUEUED and job.queue_position:
        lines.append(translate(lang, "Number {position} in line", position=job.queue_position))
    if job.state is JobState.SUBMITTING and job.provider_status:
        # The answer to the send was lost: the bot asks the provider before it would send again.
        status = localized(lang, job.provider_status)
        lines.append(translate(lang, "The answer was lost; {status} before sending again", status=status))
    if job.state is JobState.RUNNING:
        if job.progress is not None:
            lines.append(progress_bar(job.progress))
        left = time_left(eta, lang)
        if left is not None:
            lines.append(left)
        elif eta.finish_at is not None:
            lines.append(translate(lang, "Expected {when}", when=_stamp(eta.finish_at)))
    if job.state.finished:
        if job.finished_at is not None:
            took = duration((job.finished_at - job.created_at).total_seconds(), lang)
            lines.append(translate(lang, "Took {duration}", duration=took))
        if job.error_reason and job.state is not JobState.SUCCEEDED:
            lines.append(localized_all(lang, job.error_reason))
        step = NEXT_STEPS.get(job.state)
        if step:
            lines.append(translate(lang, step))
    else:
        lines.append(translate(lang, "Started {when}", when=_stamp(job.created_at)))
    price = cost(job, lang)
    if price:
        lines.append(translate(lang, "Cost: {price}", price=price))
    # i18n: field name
    embed.add_field(name=translate(lang, "Status"), value="\n".join(lines)[:1024], inline=False)
    for name in SHOWN_OPTIONS.get(job.provider, ()):
        value = job.params.get(name)
        if value is not None and value != "":
            shown = option_value(name, value, lang)
            embed.add_field(name=translate(lang, OPTION_NAMES[name]), value=shown[:1024], inline=True)
    if job.state is JobState.SUCCEEDED and job.cover_url:
        embed.set_image(url=job.cover_url)
    if thumbnail:
        embed.set_thumbnail(url=f"attachment://{thumbnail_name(job)}")
    embed.set_footer(text=translate(lang, "Job {job_id}", job_id=job.id))
    return embed


def option_value(name: str, value: object, language: str) -> str:
    """An option's value as the card shows it: words (styles, motions, switches) translated, spellings as they are."""
    if isinstance(value, bool):
        return translate(language, "on") if value else translate(language, "off")
    if isinstance(value, str) and is_word_choice(name, value):
        return translate(language, value)
    return str(value)


def thumbnail_name(job: Job) -> str:
    extension = str(job.media.get("thumbnail", "x.jpg")).rsplit(".", 1)[-1]
    return f"{INPUT_THUMBNAIL}.{extension}"


def card_text(job: Job) -> str | None:
    """The card's message text: the video link when it is too long for a link button, else nothing."""
    if job.state is JobState.SUCCEEDED and job.video_url and len(job.video_url) > MAX_BUTTON_URL:
        return translate(job.language, "Video (the provider's link expires): {url}", url=job.video_url)
    return None


def buttons(job: Job, *, can_stylize: bool, language: str | None = None) -> discord.ui.View:
    """The card's buttons for the job's state; their custom ids carry the job id, so they survive restarts."""
    lang = language or job.language
    view = discord.ui.View(timeout=None)
    if not job.state.finished:
        view.add_item(JobButton("cancel", job.id, lang))
        return view
    if job.state is JobState.SUCCEEDED:
        if job.video_url and len(job.video_url) <= MAX_BUTTON_URL:
            # i18n: button label
            label = translate(lang, "Open")
            view.add_item(discord.ui.Button(label=label, style=discord.ButtonStyle.link, url=job.video_url))
        view.add_item(JobButton("reroll", job.id, lang))
        if can_stylize:
            view.add_item(JobButton("stylize", job.id, lang))
    else:
        view.add_item(JobButton("retry", job.id, lang))
    return view


def announcement(job: Job, *, linked: bool, unfetched: bool = False, can_retry: bool = False) -> str:
    """The message that tells the user the job ended (it mentions them, so they are notified), in the job's language.

    ``linked``: the video is too large to upload, so the link is given; ``unfetched``: the video could
    not be fetched from the provider (its link expired or did not answer), so no link is given.
    """
    lang = job.language
    who = f"<@{job.user_id}>"
    if job.state is JobState.SUCCEEDED:
        if unfetched:
            if can_retry:
                again = translate(lang, "Press Retry to make it again.")
            else:
                again = translate(lang, "Start a new job to make it again.")
            return translate(
                lang,
                "{who} job {job_id} finished, but its video could not be fetched from the provider "
                "(the link expired or did not answer). {again}",
                who=who,
                job_id=job.id,
                again=again,
            )
        message = translate(lang, "{who} your video from job {job_id} is ready.", who=who, job_id=job.id)
        if linked:
            message += translate(
                lang,
                " It is too large to upload here, so here is the link (provider links expire): {url}",
                url=job.video_url,
            )
        return message
    words = translate(lang, STATE_WORDS[job.state])
    reason = localized_all(lang, job.error_reason) if job.error_reason else ""
    step = NEXT_STEPS.get(job.state)
    text = translate(lang, "{who} job {job_id}: {state}.", who=who, job_id=job.id, state=words)
    return " ".join(part for part in (text, reason, translate(lang, step) if step else "") if part)


def duration(seconds: float, language: str) -> str:
    """A span of time in words (a Discord timestamp cannot say how long something took)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return translate(language, "{seconds} s", seconds=seconds)
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return translate(language, "{minutes} min {seconds} s", minutes=minutes, seconds=seconds)
    hours, minutes = divmod(minutes, 60)
    return translate(language, "{hours} h {minutes} min", hours=hours, minutes=minutes)


def log_line(job: Job) -> str:
    """One line for a server's log channel, in the job's language."""
    lang = job.language
    words = translate(lang, STATE_WORDS[job.state])
    if job.finished_at:
        took = duration((job.finished_at - job.created_at).total_seconds(), lang)
        words = translate(lang, "{state} in {duration}", state=words, duration=took)
    parts = [translate(lang, "Job {job_id}", job_id=job.id), title(job, lang), f"<@{job.user_id}>", words]
    price = cost(job, lang)
    if price:
        parts.append(price)
    if job.error_reason and job.state is not JobState.SUCCEEDED:
        parts.append(localized_all(lang, job.error_reason))
    return " · ".join(parts)

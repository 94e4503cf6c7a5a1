"""The sentences the scheduler writes into the ledger: a finished job's reason (its card, /jobs cancel and the log
line show it) and the status a card shows while the bot asks whether a send arrived.

They stay English in the ledger, which logs and every process read; each template here is also a catalog message
that bot/i18n/sentences.py reads back in the reader's language, so this module is the one list of them.
"""

from __future__ import annotations

from datetime import timedelta

from bot.i18n import mark

CANCELLED_BEFORE_SENT = mark("Cancelled before it was sent.")
CANCELLED_STOPPED = mark("Cancelled; {provider} stopped the job.")
CANCELLED_TOO_LATE = mark(
    "Cancelled; {provider} had already started it, so it may still be charged. The bot stopped tracking it."
)
CANCELLED_UNSTOPPABLE = mark(
    "Cancelled; {provider} cannot stop a job once started, so it may still be charged. The bot stopped tracking it."
)
INPUT_GONE = mark("The input file is no longer kept; start a new job.")
PROVIDER_GONE = mark("{provider} is not configured on this bot any more, so the job was not followed.")
LOST_TRACK = mark(
    "The bot lost track of this job while sending it, and {provider} cannot tell whether it started; to avoid "
    "charging twice it was not sent again."
)
MODERATION = mark("{provider}'s content review refused this input.")
CREDENTIALS = mark("{provider} refused the bot's API key; ask the bot's owner to check it.")
OUT_OF_CREDITS = mark("The bot's {provider} account is out of credits; ask the bot's owner to top it up.")
UNAVAILABLE = mark("{provider} stayed unavailable after several tries ({detail}); try again later.")
REFUSED = mark("{provider} refused the job: {detail}.")
QUEUE_MINUTES = mark("The job waited in the queue for more than {minutes} minutes, so it was not sent.")
QUEUE_HOURS = mark("The job waited in the queue for more than {hours} hours, so it was not sent.")
DEADLINE_MINUTES = mark("{provider} did not finish within {minutes} minutes, so the bot stopped waiting.")
DEADLINE_HOURS = mark("{provider} did not finish within {hours} hours, so the bot stopped waiting.")
STALL_MINUTES = mark(
    "{provider} made no progress for {minutes} minutes (stuck at {progress}), so the bot stopped waiting."
)
STALL_HOURS = mark("{provider} made no progress for {hours} hours (stuck at {progress}), so the bot stopped waiting.")
UNREACHABLE_PAST_DEADLINE = mark("{provider} could not be reached to check this job past its deadline.")
CANCEL_UNREACHABLE = mark("{provider} could not be reached to cancel job {job_id} ({detail}); try again in a minute.")
ALREADY_ENDED = mark("Job {job_id} already ended ({state}).")
#: The card's status while the bot asks the provider whether a send whose answer was lost arrived.
CHECKING_RECEIPT = mark("checking whether {provider} received it")

#: Every template above, in the order written (a more specific one before a more general one).
TEMPLATES: tuple[str, ...] = tuple(value for name, value in dict(globals()).items() if name.isupper())


def provider_gone(provider: str) -> str:
    return PROVIDER_GONE.format(provider=provider)


def checking_receipt(provider: str) -> str:
    return CHECKING_RECEIPT.format(provider=provider)


def queue_timeout(waited: timedelta) -> str:
    return _by_span(QUEUE_MINUTES, QUEUE_HOURS, waited)


def deadline_passed(provider: str, span: timedelta) -> str:
    return _by_span(DEADLINE_MINUTES, DEADLINE_HOURS, span, provider=provider)


def stalled(provider: str, span: timedelta, progress: float) -> str:
    return _by_span(STALL_MINUTES, STALL_HOURS, span, provider=provider, progress=f"{progress:.0%}")


def _by_span(in_minutes: str, in_hours: str, span: timedelta, **values: str) -> str:
    """A span in whole minutes, or in hours from two hours on."""
    minutes = round(span.total_seconds() / 60)
    if minutes < 120:
        return in_minutes.format(minutes=minutes, **values)
    return in_hours.format(hours=round(minutes / 60), **values)

"""The presenter: the only code that edits job messages, and the one that announces finished jobs.

Edits happen only when something visible changed, at most once per PROGRESS_EDIT_SECONDS per card,
and inside Discord's rate limits: while a job's interaction token lives, its card and its
announcement go through the token (each interaction has its own rate-limit bucket); afterwards
through the bot token on the channel message, within a per-channel budget that is tighter for
messages older than an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import discord
from discord.http import handle_message_parameters

from bot.background import TaskSet
from bot.downloads import fetch
from bot.i18n import LANGUAGES, translate
from bot.jobs.inputs import InputStore
from bot.store import Intake, Job, JobState, Store
from bot.ui import cards
from bot.ui.buttons import JobButton

log = logging.getLogger(__name__)

#: Stop using an interaction token a little before Discord's 15 minutes run out.
TOKEN_MARGIN = timedelta(seconds=60)
#: Messages older than this have a tighter edit limit on Discord.
OLD_MESSAGE = timedelta(hours=1)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
#: Announcements (each perhaps a video download of up to the upload limit) worked on at once.
MAX_FINISHING = 4
MAX_DOWNLOADS = 2
#: How long a claim on an announcement holds, and how often the ledger is asked for due ones.
DELIVERY_LEASE = timedelta(seconds=30)
DELIVERY_CHECK_SECONDS = 2.0
#: Failed announcements are tried again after these waits, then given up with a log line and an event.
ANNOUNCE_RETRY_SECONDS = (2.0, 15.0, 60.0, 300.0)
#: How Discord answers a webhook call with a token it no longer honours (401 Invalid Webhook Token,
#: 404 Unknown Webhook), possibly well inside the 15 minutes. 404 10008 Unknown Message is a deleted card.
DEAD_TOKEN = frozenset({(401, 50027), (404, 10015)})
#: How often the cards of running jobs are looked at again, so that a card counting down the expected run
#: time moves on between the provider's answers (its text changes once a minute, so it is edited as often).
CARD_REFRESH_SECONDS = 30.0
#: How long an expected run time read from the ledger is used before it is read again.
MEDIAN_CACHE_SECONDS = 60.0


class CardNotOpened(Exception):
    """The job exists but its card could not be shown (not a Discord refusal: e.g. the network failed)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id}'s card could not be opened")
        self.job_id = job_id


@dataclass
class ChannelBudget:
    """A sliding-window allowance of bot-token requests per channel, kept under Discord's limits."""

    per_window: int = 4
    window: float = 5.0
    old_per_window: int = 2
    old_window: float = 6.0
    clock: Callable[[], float] = time.monotonic
    #: Processes sharing the bot token: each keeps its own share of every channel's allowance.
    processes: int = 1
    _sent: dict[tuple[int, bool], deque[float]] = field(default_factory=dict)

    def share(self, processes: int) -> None:
        self.processes = max(1, processes)

    def wait_time(self, channel_id: int, *, old: bool) -> float:
        """Seconds until one more request to the channel fits; 0 when it fits now."""
        limit, window = (self.old_per_window, self.old_window) if old else (self.per_window, self.window)
        limit = max(1, limit // self.processes)
        sent = self._sent.setdefault((channel_id, old), deque())
        now = self.clock()
        while sent and sent[0] <= now - window:
            sent.popleft()
        return 0.0 if len(sent) < limit else sent[0] + window - now

    def take(self, channel_id: int, *, old: bool) -> None:
        self._sent.setdefault((channel_id, old), deque()).append(self.clock())

    async def acquire(self, channel_id: int, *, old: bool) -> None:
        while (wait := self.wait_time(channel_id, old=old)) > 0:  # noqa: ASYNC110 - waits out a time window
            await asyncio.sleep(wait)
        self.take(channel_id, old=old)


@dataclass
class _Card:
    signature: tuple[object, ...] | None = None
    last_edit: float = -1e9
    busy: bool = False
    gone: bool = False
    finishing: bool = False


class Presenter:
    """Keeps every job's card current and announces each finished job once."""

    def __init__(
        self,
        store: Store,
        inputs: InputStore,
        session: aiohttp.ClientSession,
        *,
        mark_delivered: Callable[[int], Awaitable[bool]],
        edit_seconds: float,
        can_stylize: bool,
        budget: ChannelBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        lease: timedelta = DELIVERY_LEASE,
        on_announced: Callable[[str, float], None] | None = None,
        refresh_seconds: float = CARD_REFRESH_SECONDS,
    ) -> None:
        self.lease = lease
        #: How often the cards of running jobs are drawn again when nothing was published about them.
        self.refresh_seconds = refresh_seconds
        #: Told (provider, seconds since the job finished) after each announcement is posted.
        self.on_announced = on_announced
        self._client: discord.Client | None = None
        self.store = store
        self.inputs = inputs
        self.session = session
        self.mark_delivered = mark_delivered
        self.edit_seconds = edit_seconds
        self.can_stylize = can_stylize
        self.budget = budget or ChannelBudget(clock=clock)
        self._clock = clock
        self._now = now
        self._cards: dict[int, _Card] = {}
        self._dead_tokens: set[int] = set()
        self._dirty: dict[int, Job] = {}
        self._medians: dict[tuple[str, str | None, str | None], tuple[float, float | None]] = {}
        #: The running jobs whose cards this presenter drew, as last drawn: what the refresh timer looks at.
        self._running: dict[int, Job] = {}
        self._last_refresh = clock()
        self._wake = asyncio.Event()
        self._background = TaskSet(on_done=lambda: self._wake.set())
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self.owner = f"presenter:{secrets.token_hex(4)}"
        self._finishing = 0
        self._downloads = asyncio.Semaphore(MAX_DOWNLOADS)
        self._next_delivery_check = 0.0

    # Lifecycle.

    def start(self, client: discord.Client) -> None:
        """Begin keeping cards current through this (logged-in) client."""
        self._client = client
        self._runner = asyncio.create_task(self._run(), name="presenter")

    @property
    def client(self) -> discord.Client:
        if self._client is None:
            raise RuntimeError("the presenter has not been started")
        return self._client

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        await self._background.drain(5.0)

    async def on_job(self, job: Job) -> None:
        """The scheduler's subscriber: remember the newest state; the worker decides when to show it.

        A finished job is only a hint that an announcement may be due: whether it is, the ledger says.
        """
        if job.state.finished:
            self._dirty.pop(job.id, None)
            self._running.pop(job.id, None)
            self._next_delivery_check = 0.0
        else:
            self._dirty[job.id] = job
        self._wake.set()

    # The first render.

    async def open_card(self, job: Job) -> None:
        """Turn the deferred response into the job's card, with a small copy of the input as thumbnail.

        Raises CardNotOpened when that fails for another reason than Discord refusing it; the job goes
        on all the same and its card is drawn at its next change.
        """
        card = self._cards.setdefault(job.id, _Card())
        card.busy = True
        latest = job
        try:
            latest = await self.store.get_job(job.id) or job
            eta = await self._estimate(latest)
            files = self._thumbnail(latest)
            embed = cards.card(latest, eta, thumbnail=bool(files))
            await self._edit(latest, embed, cards.buttons(latest, can_stylize=self.can_stylize), files)
            card.signature = cards.signature(latest, eta)
            card.last_edit = self._clock()
            self._drawn(latest, card)
            if not latest.state.finished:
                await self._redraw_if_ended(latest)
        except discord.HTTPException as exc:
            self._lost_card(latest, card, exc)
        except Exception as exc:
            raise CardNotOpened(job.id) from exc
        finally:
            card.busy = False
            self._wake.set()

    # Intakes that never became a job (bot/ui/intake.py decides what to say).

    async def take_over_deferral(self, intake: Intake) -> int | None:
        """The id of an intake's deferred response, found by answering it; None when it was never deferred.

        The first followup after a "thinking" deferral replaces it; without a deferral Discord has no
        webhook for the token and refuses.
        """
        try:
            text = translate(intake.language, "Picking this request up again…")
            message = await self._intake_webhook(intake).send(text, wait=True)
        except discord.NotFound:
            return None
        return message.id

    async def explain(self, intake: Intake, text: str, view: discord.ui.View | None = None) -> None:
        """Say in an intake's deferred response, in one sentence, why it did not become a job."""
        assert intake.message_id is not None
        await self._intake_webhook(intake).edit_message(
            intake.message_id, content=text, embed=None, view=view or discord.ui.View(), attachments=[]
        )

    def _intake_webhook(self, intake: Intake) -> discord.Webhook:
        assert intake.application_id is not None
        assert intake.interaction_token is not None
        return discord.Webhook.partial(intake.application_id, intake.interaction_token, client=self.client)

    def _thumbnail(self, job: Job) -> list[discord.File]:
        if not self._has_thumbnail(job):
            return []
        data = self.inputs.load_thumbnail(job.media)
        if data is None:
            return []
        return [discord.File(io.BytesIO(data), filename=cards.thumbnail_name(job))]

    # The worker.

    async def _run(self) -> None:
        # A flag, not only cancellation, ends the loop: on Python 3.11 a cancel that lands as
        # wait_for times out is swallowed, and the loop would run on.
        while not self._stopping:
            try:
                self._refresh_running()
                self._dispatch()
                await self._claim_deliveries()
            except Exception:
                log.exception("The presenter's pass failed; it carries on")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.25)

    def _refresh_running(self) -> None:
        """Every refresh period, the cards of running jobs go through the usual edit path again; each is
        edited only if its text changed (the time left moved on). Nothing is done while no job runs."""
        if not self._running or self._clock() < self._last_refresh + self.refresh_seconds:
            return
        self._last_refresh = self._clock()
        now = self._now()
        for job_id, job in self._running.items():
            # Drawn again from what it showed: only a card whose text would change costs a read and an edit.
            card = self._cards.get(job_id)
            cached = self._medians.get((job.provider, job.model, job.cost_class))
            if (
                card is not None
                and cached is not None
                and cards.signature(job, cards.estimate(job, cached[1], now)) == card.signature
            ):
                continue
            self._dirty.setdefault(job_id, job)

    def _drawn(self, job: Job, card: _Card) -> None:
        """Remember whether the refresh timer should look at this card again."""
        if job.state is JobState.RUNNING and not card.gone and job.message_id is not None:
            self._running[job.id] = job
        else:
            self._running.pop(job.id, None)

    def _dispatch(self) -> None:
        now = self._clock()
        for job_id, job in list(self._dirty.items()):
            card = self._cards.setdefault(job_id, _Card())
            if card.busy or card.finishing:
                continue
            if job.message_id is None or card.gone:
                del self._dirty[job_id]
                self._running.pop(job_id, None)
                continue
            if now < card.last_edit + self.edit_seconds:
                continue
            old = not self._token_alive(job) and self._is_old(job)
            if not self._token_alive(job) and self.budget.wait_time(job.channel_id, old=old) > 0:
                continue
            del self._dirty[job_id]
            card.busy = True
            self._background.spawn(self._refresh(job, card), f"edit card of job {job_id}")

    async def _refresh(self, job: Job, card: _Card) -> None:
        try:
            # The snapshot may be older than a change another process made: draw what the ledger says now.
            # A job that ended is drawn by its announcement, not here.
            latest = await self.store.get_job(job.id)
            if latest is None or latest.state.finished:
                self._running.pop(job.id, None)
                return
            job = latest
            eta = await self._estimate(job)
            sign = cards.signature(job, eta)
            if sign == card.signature:
                self._drawn(job, card)
                return
            await self._edit(job, cards.card(job, eta, thumbnail=self._has_thumbnail(job)), self._view(job))
            card.signature = sign
            card.last_edit = self._clock()
            self._drawn(job, card)
            await self._redraw_if_ended(job)
        except discord.HTTPException as exc:
            self._lost_card(job, card, exc)
        finally:
            card.busy = False

    async def _redraw_if_ended(self, job: Job) -> None:
        """After a progress edit: if the job ended meanwhile (perhaps in another process, whose final card
        may have landed before this edit), draw the final card again, so that the last edit is the end."""
        latest = await self.store.get_job(job.id)
        if latest is not None and latest.state.finished:
            await self._edit(latest, self._final_card(latest), self._view(latest))

    def _final_card(self, job: Job) -> discord.Embed:
        return cards.card(job, cards.Estimate(None), thumbnail=self._has_thumbnail(job))

    async def _claim_deliveries(self) -> None:
        if self._stopping or self._clock() < self._next_delivery_check or self._finishing >= MAX_FINISHING:
            return
        self._next_delivery_check = self._clock() + DELIVERY_CHECK_SECONDS
        jobs = await self.store.claim_deliveries(
            owner=self.owner, lease=self.lease, limit=MAX_FINISHING - self._finishing
        )
        for job in jobs:
            self._finishing += 1
            card = self._cards.setdefault(job.id, _Card())
            card.finishing = True
            self._background.spawn(self._finish(job, card), f"announce job {job.id}")

    async def _finish(self, job: Job, card: _Card) -> None:
        """Under the ledger's claim: the final card, one announcement that mentions the user, and the
        ledger's record of it. A failure is tried again later, a bounded number of times."""
        try:
            final = self._final_card(job)
            if job.message_id is not None and not card.gone:
                try:
                    await self._edit(job, final, self._view(job))
                    card.signature = cards.signature(job, cards.Estimate(None))
                except discord.HTTPException as exc:
                    self._lost_card(job, card, exc)
            if job.announce_started_at is not None and await self._already_announced(job):
                log.info("job %s: its announcement was already posted before a restart", job.id)
            else:
                await self.store.mark_announce_started(job.id, owner=self.owner)
                await self._announce(job, final if card.gone or job.message_id is None else None)
                if self.on_announced is not None and job.finished_at is not None:
                    self.on_announced(job.provider, (self._now() - job.finished_at).total_seconds())
            await self.mark_delivered(job.id)
            await self._log_line(job)
            self._cards.pop(job.id, None)
            self._running.pop(job.id, None)
            self._dead_tokens.discard(job.id)
        except Exception as exc:
            await self._announce_failed(job, exc)
        finally:
            card.finishing = False
            self._finishing -= 1
            # A free slot takes the next due announcement at once rather than at the next periodic check.
            self._next_delivery_check = 0.0

    async def _announce_failed(self, job: Job, exc: Exception) -> None:
        attempt = job.delivery_attempts
        error_id = secrets.token_hex(4)
        if attempt > len(ANNOUNCE_RETRY_SECONDS):
            log.error(
                "job %s: announcing failed %d times; given up (error %s)", job.id, attempt, error_id, exc_info=exc
            )
            retry_at = None
            detail = f"announcement given up after {attempt} attempts (error {error_id})"
        else:
            wait = ANNOUNCE_RETRY_SECONDS[attempt - 1]
            log.warning("job %s: announcing failed (%s, error %s); trying again in %g s", job.id, exc, error_id, wait)
            retry_at = self._now() + timedelta(seconds=wait)
            detail = f"announcement failed (error {error_id}); next try in {wait:g} s"
        await self.store.delivery_failed(job.id, owner=self.owner, retry_at=retry_at, detail=detail)

    async def _already_announced(self, job: Job) -> bool:
        """Whether a previous attempt posted the announcement before the bot could record it: the
        channel's messages after the card are read (Read Message History) for one naming the job."""
        me = self.client.user
        if me is None:
            return False
        after = discord.Object(job.message_id) if job.message_id else job.created_at
        # The announcement may be in any language the bot speaks (the job's, unless it was made before issue 16).
        numbers = {translate(language, cards.JOB_NUMBER, job_id=job.id) for language in LANGUAGES}
        marker = re.compile("|".join(rf"(?<!\w){re.escape(number)}(?!\w)" for number in sorted(numbers)))
        try:
            async for message in self.client.get_partial_messageable(job.channel_id).history(
                after=after, limit=100, oldest_first=True
            ):
                if (
                    message.author.id == me.id
                    and message.content.startswith(f"<@{job.user_id}>")
                    and marker.search(message.content)
                ):
                    return True
        except discord.HTTPException as exc:
            log.warning("job %s: could not read the channel to look for its announcement (%s)", job.id, exc)
        return False

    async def _announce(self, job: Job, embed: discord.Embed | None) -> None:
        video = None
        unfetched = False
        if job.state is JobState.SUCCEEDED and job.video_url:
            limit = job.upload_limit or DEFAULT_UPLOAD_LIMIT
            async with self._downloads:
                fetched = await fetch(self.session, job.video_url, max_bytes=limit)
            video, unfetched = fetched.data, fetched.problem is not None
            if unfetched:
                log.warning("job %s: its video could not be fetched (%s)", job.id, fetched.problem)
        can_retry = unfetched and self.inputs.kept(job.media)
        content = cards.announcement(
            job,
            linked=job.state is JobState.SUCCEEDED and video is None and not unfetched,
            unfetched=unfetched,
            can_retry=can_retry,
        )
        mentions = discord.AllowedMentions(users=[discord.Object(job.user_id)], roles=False, everyone=False)
        view = self._view(job) if embed is not None else None
        if can_retry:
            view = discord.ui.View(timeout=None)
            view.add_item(JobButton("retry", job.id))

        def attachment() -> discord.File | None:
            return discord.File(io.BytesIO(video), filename=f"job-{job.id}.mp4") if video is not None else None

        if self._token_alive(job):
            try:
                webhook = self._webhook(job)
                await webhook.send(
                    content,
                    file=attachment() or discord.utils.MISSING,
                    embed=embed or discord.utils.MISSING,
                    view=view or discord.utils.MISSING,
                    allowed_mentions=mentions,
                    wait=True,
                )
                return
            except discord.HTTPException as exc:
                if _token_refused(exc):
                    await self._token_died(job, exc)
                else:
                    log.warning(
                        "job %s: announcing through the interaction failed (%s); using the channel", job.id, exc
                    )
        try:
            await self.budget.acquire(job.channel_id, old=False)
            await self._send_to_channel(job, content, attachment(), embed, view, mentions)
        except (discord.Forbidden, discord.NotFound) as exc:
            if job.guild_id is not None and not (await self.store.guild_settings(job.guild_id)).allow_dm:
                log.warning("job %s: cannot post in channel %s (%s) and DMs are off here", job.id, job.channel_id, exc)
                return
            log.warning("job %s: cannot post in channel %s (%s); sending a DM", job.id, job.channel_id, exc)
            user = await self.client.fetch_user(job.user_id)
            await user.send(content, file=attachment() or discord.utils.MISSING, embed=embed or discord.utils.MISSING)

    async def _send_to_channel(
        self,
        job: Job,
        content: str,
        file: discord.File | None,
        embed: discord.Embed | None,
        view: discord.ui.View | None,
        mentions: discord.AllowedMentions,
    ) -> None:
        # The job key as a nonce (discord.py sends it with enforce_nonce) makes Discord drop a second
        # copy if a crash made the bot announce the same job again within minutes.
        with handle_message_parameters(
            content=content,
            file=file or discord.utils.MISSING,
            embed=embed or discord.utils.MISSING,
            view=view or discord.utils.MISSING,
            allowed_mentions=mentions,
            nonce=job.key[:25],
        ) as params:
            await self.client.http.send_message(job.channel_id, params=params)

    async def _log_line(self, job: Job) -> None:
        """One line in the server's log channel, if it has one; a failure here never affects the job."""
        if job.guild_id is None:
            return
        channel_id = (await self.store.guild_settings(job.guild_id)).log_channel_id
        if channel_id is None:
            return
        try:
            await self.budget.acquire(channel_id, old=False)
            await self.client.get_partial_messageable(channel_id).send(
                cards.log_line(job), allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException as exc:
            log.warning("job %s: the log channel %s did not take the line (%s)", job.id, channel_id, exc)

    # Where edits go.

    async def _edit(
        self, job: Job, embed: discord.Embed, view: discord.ui.View, files: list[discord.File] | None = None
    ) -> None:
        assert job.message_id is not None
        extra: dict[str, Any] = {"attachments": files} if files else {}
        content = cards.card_text(job)
        if self._token_alive(job):
            try:
                await self._webhook(job).edit_message(job.message_id, content=content, embed=embed, view=view, **extra)
                return
            except discord.HTTPException as exc:
                if not _token_refused(exc):
                    raise
                await self._token_died(job, exc)
                for file in files or []:
                    file.reset()
        await self.budget.acquire(job.channel_id, old=self._is_old(job))
        message = self.client.get_partial_messageable(job.channel_id).get_partial_message(job.message_id)
        await message.edit(content=content, embed=embed, view=view, **extra)

    async def _token_died(self, job: Job, exc: discord.HTTPException) -> None:
        """Discord refused the token: never use it again, here or after a restart; the bot token takes over."""
        log.warning("job %s: Discord refused its interaction token (%s); using the bot token from now on", job.id, exc)
        self._dead_tokens.add(job.id)
        await self.store.mark_token_dead(job.id)

    def _webhook(self, job: Job) -> discord.Webhook:
        assert job.application_id is not None
        assert job.interaction_token is not None
        return discord.Webhook.partial(job.application_id, job.interaction_token, client=self.client)

    def _token_alive(self, job: Job) -> bool:
        return (
            job.interaction_token is not None
            and job.application_id is not None
            and job.token_expires_at is not None
            and job.token_dead_at is None
            and job.id not in self._dead_tokens
            and self._now() < job.token_expires_at - TOKEN_MARGIN
        )

    def _is_old(self, job: Job) -> bool:
        return self._now() - job.created_at > OLD_MESSAGE

    def _has_thumbnail(self, job: Job) -> bool:
        """Only the small copy, and only when it fits the interaction's upload limit; never the input itself."""
        size = job.media.get("thumbnail_size")
        return (
            bool(job.media.get("thumbnail"))
            and isinstance(size, int)
            and size <= (job.upload_limit or DEFAULT_UPLOAD_LIMIT)
        )

    def _view(self, job: Job) -> discord.ui.View:
        return cards.buttons(job, can_stylize=self.can_stylize)

    def _lost_card(self, job: Job, card: _Card, exc: discord.HTTPException) -> None:
        if isinstance(exc, discord.NotFound | discord.Forbidden):
            # The card was deleted or the bot lost access: the job goes on and is announced anew.
            card.gone = True
            self._running.pop(job.id, None)
            log.warning("job %s: its card cannot be edited any more (%s)", job.id, exc)
            return
        log.warning("job %s: editing its card failed (%s); the next change tries again", job.id, exc)

    async def _estimate(self, job: Job) -> cards.Estimate:
        median = None
        if job.state is JobState.RUNNING and (job.progress or 0.0) < cards.MIN_PROGRESS:
            key = (job.provider, job.model, job.cost_class)
            cached = self._medians.get(key)
            if cached is None or self._clock() - cached[0] > MEDIAN_CACHE_SECONDS:
                median = await self.store.median_run_seconds(job.provider, job.model, cost_class=job.cost_class)
                cached = (self._clock(), median)
                self._medians[key] = cached
            median = cached[1]
        return cards.estimate(job, median, self._now())


def _token_refused(exc: discord.HTTPException) -> bool:
    return (exc.status, exc.code) in DEAD_TOKEN

"""Commands and clicks that create jobs are written to the ledger before Discord hears "thinking…".

While a handler works on one, its process holds a lease on the record; the record goes in the
transaction that writes the job. A record nobody holds any more (the process died between the
acknowledgement and the job) is finished here: from its kept bytes or its source job, the job is made
(once: its key derives from the interaction id) and the deferred response becomes its card; without
them, the member is told in one sentence that nothing was billed, with a Retry button. After the
token's 15 minutes nobody can be told any more, and the record is closed with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import discord

from bot.errors import UserError
from bot.i18n import translate
from bot.jobs.inputs import InputStore
from bot.jobs.service import JobService, Requester
from bot.store import Intake, IntakeKind, Job, Store
from bot.ui.buttons import IntakeRetry
from bot.ui.language import server_language_of
from bot.ui.presenter import TOKEN_MARGIN, Presenter
from providers import Operation

log = logging.getLogger(__name__)

#: Discord's interaction token lives 15 minutes from the interaction.
TOKEN_LIFETIME = timedelta(minutes=15)
#: How long a handler holds its intake; a record held longer is taken to be orphaned.
INTAKE_LEASE = timedelta(seconds=30)
#: How often records nobody holds are looked for (after a start, at once).
RECOVERY_SECONDS = 60.0
#: On a stop, handlers still making their job get this long to finish; the rest wait for the next start.
STOP_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class AttachmentRef:
    """An attachment as the intake keeps it: enough to check it and to read it again later."""

    url: str
    filename: str
    content_type: str | None
    size: int

    @classmethod
    def of(cls, attachment: discord.Attachment) -> AttachmentRef:
        return cls(attachment.url, attachment.filename, attachment.content_type, attachment.size)


class InterruptedByStop(Exception):
    """A handler's work on an intake ended because the bot is stopping; the next start finishes it."""

    def __init__(self, interaction_id: int) -> None:
        super().__init__(f"request {interaction_id} was interrupted by the stop; the next start finishes it")
        self.interaction_id = interaction_id


def requester_of(intake: Intake) -> Requester:
    return Requester(
        guild_id=intake.guild_id,
        channel_id=intake.channel_id,
        user_id=intake.user_id,
        message_id=intake.message_id,
        application_id=intake.application_id,
        interaction_token=intake.interaction_token,
        token_expires_at=intake.token_expires_at,
        upload_limit=intake.upload_limit,
        language=intake.language,
    )


class IntakeDesk:
    """Records intakes for the handlers, and finishes the ones whose handler did not."""

    def __init__(
        self,
        store: Store,
        jobs: JobService,
        inputs: InputStore,
        presenter: Presenter,
        *,
        now: Callable[[], datetime],
        lease: timedelta = INTAKE_LEASE,
    ) -> None:
        self.store = store
        self.lease = lease
        self.jobs = jobs
        self.inputs = inputs
        self.presenter = presenter
        self._now = now
        process = secrets.token_hex(4)
        self.owner = f"intake:{process}"
        self._recovery = f"intake-recovery:{process}"
        #: The names on the leases this desk takes, for the lease keeper.
        self.owners = (self.owner, self._recovery)
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._handlers = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # What the handlers call.

    async def record(
        self,
        interaction: discord.Interaction[Any],
        kind: IntakeKind,
        provider: str,
        operation: str,
        params: Mapping[str, Any],
        *,
        attachment: AttachmentRef | None = None,
        source_job_id: int | None = None,
    ) -> Intake:
        """Write the request before it is acknowledged; the caller defers only after this returns."""
        intake = Intake(
            interaction_id=interaction.id,
            kind=kind,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id or 0,
            user_id=interaction.user.id,
            application_id=interaction.application_id,
            interaction_token=interaction.token,
            token_expires_at=interaction.created_at + TOKEN_LIFETIME,
            upload_limit=interaction.filesize_limit,
            provider=provider,
            operation=operation,
            params=dict(params),
            source_job_id=source_job_id,
            attachment_url=attachment.url if attachment else None,
            attachment_name=attachment.filename if attachment else None,
            attachment_type=attachment.content_type if attachment else None,
            attachment_size=attachment.size if attachment else None,
            created_at=self._now(),
            language=await server_language_of(self.store, interaction),
        )
        await self.store.record_intake(intake, owner=self.owner, lease=self.lease)
        return intake

    @contextlib.asynccontextmanager
    async def working(self, intake: Intake) -> AsyncIterator[None]:
        """Around a handler's work on an intake, up to its card: an error answered to the member drops the
        record (a no-op once the job is written).

        A stop (cancellation, or an error while the bot closes) leaves it for the next start, which tells
        the member: the error becomes InterruptedByStop, which is not an error to report.
        """
        self._handlers += 1
        self._idle.clear()
        try:
            yield
        except Exception:
            if not self._stopping:
                await self.store.drop_intake(intake.interaction_id)
                self.discard_upload(intake)
                raise
            raise InterruptedByStop(intake.interaction_id) from None
        finally:
            self._handlers -= 1
            if not self._handlers:
                self._idle.set()

    async def acknowledged(self, intake: Intake, message_id: int) -> Intake:
        await self.store.intake_acknowledged(intake.interaction_id, message_id)
        return replace(intake, message_id=message_id)

    async def keep_upload(self, intake: Intake, data: bytes) -> None:
        name = await asyncio.to_thread(self.inputs.keep_upload, intake.interaction_id, data)
        await self.store.intake_upload_kept(intake.interaction_id, name)

    def discard_upload(self, intake: Intake) -> None:
        self.inputs.discard_upload(self.inputs.upload_name(intake.interaction_id))

    # Finishing orphaned intakes.

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="intake-recovery")

    async def stop(self) -> None:
        """Stop finishing orphaned intakes, and give the handlers in flight a moment to make their jobs."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await asyncio.gather(self._loop, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), STOP_GRACE_SECONDS)

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before the pass: a stop that comes during it still ends the wait below at once.
            self._wake.clear()
            try:
                await self.recover()
            except Exception:
                log.exception("Looking for unfinished requests failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=RECOVERY_SECONDS)

    async def recover(self) -> int:
        """Finish every intake nobody holds; returns how many were looked at."""
        seen = 0
        while not self._stopping:
            claimed = await self.store.claim_intakes(owner=self._recovery, lease=self.lease, alive=self.owner)
            if not claimed:
                return seen
            for intake in claimed:
                seen += 1
                await self._finish(intake)
        return seen

    async def _finish(self, intake: Intake) -> None:
        if intake.token_expires_at is None or self._now() >= intake.token_expires_at - TOKEN_MARGIN:
            log.warning(
                "Request %s from member %s was never made into a job and its token has expired; closing it",
                intake.interaction_id,
                intake.user_id,
            )
            await self._close(intake, "expired")
            return
        try:
            if intake.message_id is None:
                message_id = await self.presenter.take_over_deferral(intake)
                if message_id is None:
                    log.info("Request %s was never acknowledged; closing it", intake.interaction_id)
                    await self._close(intake, "unacknowledged")
                    return
                intake = await self.acknowledged(intake, message_id)
            job = await self._make_job(intake)
        except discord.DiscordServerError as exc:
            # Discord's own trouble: the lease runs out and the next pass tries again, within the token's life.
            log.warning("Request %s: Discord failed (%s); trying again later", intake.interaction_id, exc)
            return
        except discord.HTTPException as exc:
            log.warning("Request %s: Discord refused its token (%s); closing it", intake.interaction_id, exc)
            await self._close(intake, "unreachable")
            return
        except UserError as exc:
            await self._tell(intake, exc.text(intake.language), "refused")
            return
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("Error %s while finishing request %s after a restart", error_id, intake.interaction_id)
            text = translate(
                intake.language, "Sorry, something went wrong on our side (error id {error_id}).", error_id=error_id
            )
            await self._tell(intake, text, "failed")
            return
        if job is None:
            view = discord.ui.View(timeout=None)
            if intake.attachment_url:
                view.add_item(IntakeRetry(intake.interaction_id, intake.language))
            text = translate(
                intake.language,
                "The bot restarted before this job was made, and nothing was billed; press Retry to start it "
                "again with the same options.",
            )
            await self._tell(intake, text, "restarted", view)
            return
        log.info("Request %s became job %s after a restart", intake.interaction_id, job.id)
        self.discard_upload(intake)
        try:
            await self.presenter.open_card(job)
        except Exception as exc:
            log.warning("Job %s's card could not be opened yet (%s); it is drawn at its next change", job.id, exc)

    async def _make_job(self, intake: Intake) -> Job | None:
        """The job this intake asked for, made from what is kept; None when the attachment was never read."""
        who = requester_of(intake)
        if intake.kind is IntakeKind.COMMAND:
            data = await asyncio.to_thread(self.inputs.load_upload, intake.upload) if intake.upload else None
            if data is None:
                return None
            return await self.jobs.create(
                who, intake.provider, Operation(intake.operation), intake.params, data, intake_id=intake.interaction_id
            )
        source = await self.store.get_job(intake.source_job_id or 0)
        if source is None:
            raise UserError("Job {job_id} is no longer kept; start a new job instead.", job_id=intake.source_job_id)
        if intake.kind is IntakeKind.STYLIZE:
            return await self.jobs.stylize(source, who, str(intake.params["style"]), intake_id=intake.interaction_id)
        return await self.jobs.again(
            source, who, new_seed=intake.kind is IntakeKind.REROLL, intake_id=intake.interaction_id
        )

    async def _tell(self, intake: Intake, text: str, outcome: str, view: discord.ui.View | None = None) -> None:
        try:
            await self.presenter.explain(intake, text, view)
        except discord.DiscordServerError as exc:
            log.warning("Request %s: Discord failed (%s); telling the member later", intake.interaction_id, exc)
            return
        except discord.HTTPException as exc:
            log.warning("Could not tell member %s about request %s (%s)", intake.user_id, intake.interaction_id, exc)
        await self._close(intake, outcome)

    async def _close(self, intake: Intake, outcome: str) -> None:
        await self.store.close_intake(intake.interaction_id, outcome)
        if intake.upload:
            self.discard_upload(intake)

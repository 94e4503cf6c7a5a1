"""Creating jobs: from a command, or again from an earlier job (Retry, Reroll, Stylize).

Knows jobs, inputs and providers; the Discord side hands it who asked and where the card lives.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from bot.downloads import download
from bot.errors import ProblemsError, UserError
from bot.jobs.admission import refusal
from bot.jobs.inputs import InputMissing, InputStore
from bot.jobs.preparation import PreparationPool
from bot.jobs.scheduler import Scheduler
from bot.store import Admission, Job, JobState, LimitReached, NewJob, intake_job_key
from providers import Operation, VideoProvider
from providers.hidream.capabilities import VIDEO_LIMITS
from providers.media import MediaRejected, PreparedImage, PreparedVideo


@dataclass(frozen=True)
class Requester:
    """Who asked, and how the bot can reach the job's card."""

    guild_id: int | None
    channel_id: int
    user_id: int
    message_id: int | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: datetime | None = None
    upload_limit: int | None = None
    #: The language of the job's card and delivery (the server's, when the command came).
    language: str = "en-US"


def cost_class(provider: str, operation: Operation, resolved: Mapping[str, Any]) -> str:
    """What a job's price depends on, as far as the providers' price lists show: the model, the length and the
    resolution (PixVerse calls it quality). Jobs of one class cost about the same."""
    resolution = resolved.get("resolution", resolved.get("quality"))
    parts = (provider, operation.value, resolved.get("model"), resolved.get("duration"), resolution)
    return "/".join("" if part is None else str(part) for part in parts)


class JobService:
    """Turns a request into a queued job whose input is kept on disk."""

    def __init__(
        self,
        providers: Mapping[str, VideoProvider],
        scheduler: Scheduler,
        inputs: InputStore,
        session: aiohttp.ClientSession,
        preparation: PreparationPool | None = None,
    ) -> None:
        self.providers = providers
        self.scheduler = scheduler
        self.inputs = inputs
        self.session = session
        self.preparation = preparation or PreparationPool()

    def provider(self, name: str) -> VideoProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise UserError("{provider} is not set up on this bot; pick another provider.", provider=name)
        return provider

    def check(self, provider_name: str, operation: Operation, params: Mapping[str, Any]) -> None:
        """Raise UserError with every problem in the options, before anything is downloaded."""
        problems = self.provider(provider_name).validate(operation, params)
        if problems:
            raise ProblemsError(problems)

    async def create(
        self,
        who: Requester,
        provider_name: str,
        operation: Operation,
        params: Mapping[str, Any],
        data: bytes,
        *,
        parent_id: int | None = None,
        admission: Admission | None = None,
        intake_id: int | None = None,
    ) -> Job:
        """Validate, prepare the input (in the bounded pool: images can be large), keep it, and queue the job.

        With ``intake_id``, the job's key derives from it and its intake record goes when the job is written:
        asking again for the same intake returns the job made the first time.
        """
        self.check(provider_name, operation, params)
        provider = self.provider(provider_name)
        try:
            media = await self.preparation.run(provider.prepare_media, operation, data)
        except MediaRejected as exc:
            raise ProblemsError([str(exc)]) from None
        return await self._enqueue(who, provider, operation, dict(params), media, parent_id, admission, intake_id)

    async def again(
        self,
        job: Job,
        who: Requester,
        *,
        new_seed: bool,
        admission: Admission | None = None,
        intake_id: int | None = None,
    ) -> Job:
        """The same job once more, with the kept input: Retry, or Reroll with a new seed."""
        params = dict(job.params)
        provider = self.provider(job.provider)
        options = provider.capabilities[Operation(job.operation)].options
        seed = next((spec for spec in options if spec.name == "seed"), None)
        if new_seed and seed is not None:
            # Within the provider's documented range; 0 means "random" to some, so start at 1.
            params["seed"] = random.randint(1, int(seed.max_value or 2**31 - 1))  # noqa: S311 - a seed, not a secret
        try:
            media = await asyncio.to_thread(self.inputs.load, job.media)
        except InputMissing:
            raise UserError(
                "Job {job_id}'s input is no longer kept; start a new job with the image attached.", job_id=job.id
            ) from None
        return await self._enqueue(who, provider, Operation(job.operation), params, media, job.id, admission, intake_id)

    async def stylize(
        self,
        job: Job,
        who: Requester,
        style: str,
        *,
        admission: Admission | None = None,
        intake_id: int | None = None,
    ) -> Job:
        """Restyle a finished job's video with HiDream."""
        if job.state is not JobState.SUCCEEDED or not job.video_url:
            raise UserError("Job {job_id} has no finished video to restyle.", job_id=job.id)
        self.check("hidream", Operation.STYLIZE, {"style": style})
        video = await download(self.session, job.video_url, max_bytes=VIDEO_LIMITS.max_bytes)
        if video is None:
            raise UserError(
                "Job {job_id}'s video could not be fetched (provider links expire, or it is over {megabytes} MB); "
                "start a new /stylize with the video attached.",
                job_id=job.id,
                megabytes=VIDEO_LIMITS.max_bytes // (1024 * 1024),
            )
        return await self.create(
            who,
            "hidream",
            Operation.STYLIZE,
            {"style": style},
            video,
            parent_id=job.id,
            admission=admission,
            intake_id=intake_id,
        )

    async def _enqueue(
        self,
        who: Requester,
        provider: VideoProvider,
        operation: Operation,
        params: dict[str, Any],
        media: PreparedImage | PreparedVideo,
        parent_id: int | None,
        admission: Admission | None,
        intake_id: int | None,
    ) -> Job:
        key = intake_job_key(intake_id) if intake_id is not None else uuid.uuid4().hex
        described = await asyncio.to_thread(self.inputs.save, key, media)
        resolved = provider.capabilities[operation].resolve(params)
        model = params.get("model") or resolved.get("model")
        new = NewJob(
            key=key,
            guild_id=who.guild_id,
            channel_id=who.channel_id,
            user_id=who.user_id,
            message_id=who.message_id,
            application_id=who.application_id,
            interaction_token=who.interaction_token,
            token_expires_at=who.token_expires_at,
            upload_limit=who.upload_limit,
            provider=provider.name,
            operation=operation.value,
            model=str(model) if model else None,
            params=params,
            media=described,
            parent_id=parent_id,
            intake_id=intake_id,
            cost_class=cost_class(provider.name, operation, resolved),
            language=who.language,
        )
        try:
            return await self.scheduler.enqueue(new, admission=admission)
        except LimitReached as exc:
            await asyncio.to_thread(self.inputs.discard, described)
            assert admission is not None
            raise refusal(exc, admission) from None

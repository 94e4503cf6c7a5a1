"""The one place the scheduler's limits and timing come from: the settings."""

from __future__ import annotations

from datetime import timedelta

from bot.config import Settings
from bot.jobs.scheduler import ProviderLimits, SchedulerSettings
from providers import Operation


def scheduler_settings(settings: Settings, *, callback_providers: frozenset[str] = frozenset()) -> SchedulerSettings:
    """The scheduler's limits and timing from the environment's settings; ``callback_providers`` call back."""

    def cap(value: int) -> int | None:
        return value or None

    def per_minute(**by_operation: int) -> dict[Operation, int]:
        return {Operation(name): value for name, value in by_operation.items() if value}

    stall = timedelta(minutes=settings.stall_minutes)
    return SchedulerSettings(
        poll_interval=settings.poll_interval_seconds,
        max_poll_interval=max(60.0, settings.poll_interval_seconds),
        queue_timeout=timedelta(hours=settings.queue_timeout_hours),
        lease=timedelta(seconds=settings.lease_seconds),
        # A send in flight at a stop may be an upload and a create, each up to the HTTP timeout.
        stop_grace=2 * settings.http_timeout_seconds + 10,
        callback_providers=callback_providers,
        callback_poll_interval=settings.callback_poll_seconds,
        limits={
            "hidream": ProviderLimits(
                max_running=cap(settings.hidream_max_running),
                submits_per_minute=per_minute(
                    image_to_video=settings.hidream_submits_per_minute,
                    stylize=settings.hidream_stylize_submits_per_minute,
                ),
                deadline=timedelta(minutes=settings.hidream_deadline_minutes),
                stall=stall,
            ),
            "pixverse": ProviderLimits(
                max_running=cap(settings.pixverse_max_running),
                submits_per_minute=per_minute(image_to_video=settings.pixverse_submits_per_minute),
                deadline=timedelta(minutes=settings.pixverse_deadline_minutes),
                stall=stall,
            ),
            "vidu": ProviderLimits(
                max_running=cap(settings.vidu_max_running),
                submits_per_minute=per_minute(image_to_video=settings.vidu_submits_per_minute),
                deadline=timedelta(minutes=settings.vidu_deadline_minutes),
                stall=stall,
            ),
        },
    )

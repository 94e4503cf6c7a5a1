"""Builds the provider clients that have credentials."""

from __future__ import annotations

import aiohttp

from bot.config import Settings
from bot.metrics import Metrics
from providers import VideoProvider
from providers.hidream import HiDream
from providers.pixverse import PixVerse
from providers.vidu import Vidu

PROVIDER_CLASSES: tuple[type[VideoProvider], ...] = (HiDream, PixVerse, Vidu)
#: Each provider's name as users know it, by its short name.
PROVIDER_NAMES = {provider.name: provider.display_name for provider in PROVIDER_CLASSES}


def build_providers(
    settings: Settings, session: aiohttp.ClientSession, metrics: Metrics | None = None
) -> dict[str, VideoProvider]:
    """One client per provider whose key is set, by provider name; each tells ``metrics`` of its requests."""
    timeout = settings.http_timeout_seconds
    built: list[VideoProvider] = []
    if settings.hidream_api_key.get_secret_value():
        built.append(
            HiDream(
                session,
                settings.hidream_api_key,
                base_url=settings.hidream_base_url,
                timeout=timeout,
                observer=metrics.provider_observer(HiDream.name) if metrics else None,
            )
        )
    if settings.pixverse_api_key.get_secret_value():
        built.append(
            PixVerse(
                session,
                settings.pixverse_api_key,
                base_url=settings.pixverse_base_url,
                timeout=timeout,
                observer=metrics.provider_observer(PixVerse.name) if metrics else None,
            )
        )
    if settings.vidu_api_key.get_secret_value():
        built.append(
            Vidu(
                session,
                settings.vidu_api_key,
                base_url=settings.vidu_base_url,
                auth_scheme=settings.vidu_auth_scheme,
                timeout=timeout,
                observer=metrics.provider_observer(Vidu.name) if metrics else None,
            )
        )
    return {provider.name: provider for provider in built}

"""Builds the provider clients that have credentials."""

from __future__ import annotations

import aiohttp

from bot.callbacks import callback_url
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
    """One client per provider whose key is set, by provider name; each tells ``metrics`` of its requests.

    With PUBLIC_URL, HiDream and Vidu are asked to call back under it; with PIXVERSE_WEBHOOK_SECRET, PixVerse's
    account webhook is taken.
    """
    timeout = settings.http_timeout_seconds
    public = settings.public_url
    webhook = settings.pixverse_webhook_secret
    built: list[VideoProvider] = []
    if settings.hidream_api_key.get_secret_value():
        built.append(
            HiDream(
                session,
                settings.hidream_api_key,
                base_url=settings.hidream_base_url,
                timeout=timeout,
                observer=metrics.provider_observer(HiDream.name) if metrics else None,
                callback_url=callback_url(public, HiDream.name) if public else None,
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
                webhook_secret=webhook if webhook.get_secret_value() else None,
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
                callback_url=callback_url(public, Vidu.name) if public else None,
            )
        )
    return {provider.name: provider for provider in built}

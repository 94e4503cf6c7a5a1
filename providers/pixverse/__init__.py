"""PixVerse Platform API image to video."""

from providers.pixverse.client import DEFAULT_BASE_URL, PixVerse

__all__ = ["DEFAULT_BASE_URL", "PixVerse"]

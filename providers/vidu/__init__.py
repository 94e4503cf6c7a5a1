"""Vidu enterprise API image to video."""

from providers.vidu.client import DEFAULT_BASE_URL, Vidu

__all__ = ["DEFAULT_BASE_URL", "Vidu"]

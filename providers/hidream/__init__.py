"""HiDream (Pixeling) image to video and video stylization."""

from providers.hidream.client import DEFAULT_BASE_URL, HiDream

__all__ = ["DEFAULT_BASE_URL", "HiDream"]

"""Logging set-up: one line per record, UTC timestamps."""

from __future__ import annotations

import logging
import time


def setup_logging(level: str) -> None:
    """Send every record at ``level`` or above to standard error."""
    formatter = logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # discord.py logs every gateway event at DEBUG; keep it at INFO unless asked otherwise.
    logging.getLogger("discord").setLevel(max(logging.INFO, root.level))

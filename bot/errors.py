"""Errors meant for the person who clicked or typed: one sentence that says what to change."""

from __future__ import annotations

from discord import app_commands


class UserError(app_commands.AppCommandError):
    """Something the user can fix; ``str(exc)`` is shown to them as it is."""

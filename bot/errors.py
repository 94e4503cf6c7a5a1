"""Errors meant for the person who clicked or typed: one sentence that says what to change, in their language."""

from __future__ import annotations

from collections.abc import Sequence

from discord import app_commands

from bot.i18n import translate
from bot.i18n.sentences import localized


class UserError(app_commands.AppCommandError):
    """Something the user can fix: a catalog message (its English source with ``{name}`` placeholders) and the
    values that fill it. ``str(exc)`` is the English sentence (for logs); ``text(language)`` is what the user reads."""

    def __init__(self, message: str, /, **values: object) -> None:
        super().__init__(message.format(**values))
        self.message = message
        self.values = values

    def text(self, language: str) -> str:
        return translate(language, self.message, **self.values)


class ProblemsError(UserError):
    """Several problems at once: sentences written elsewhere in English (the providers' validation and media checks,
    the scheduler's refusals), each shown in the user's language where the catalog knows its shape
    (bot/i18n/sentences.py) and as it is otherwise, and the bot's own UserErrors."""

    def __init__(self, problems: Sequence[str | UserError]) -> None:
        self.problems = tuple(problems)
        super().__init__("{problems}", problems=" ".join(str(problem) for problem in self.problems))

    def text(self, language: str) -> str:
        return " ".join(
            problem.text(language) if isinstance(problem, UserError) else localized(language, problem)
            for problem in self.problems
        )

"""The command surface in every language: descriptions and word-valued choice names go through discord.py's
Translator at sync time. Names (commands, options) stay canonical: they are the contract scripts and docs use."""

from __future__ import annotations

from discord import Locale, app_commands
from discord.app_commands import TranslationContextLocation, TranslationContextTypes, locale_str

from bot.i18n import SOURCE_LANGUAGE, Catalogs, catalogs

#: Options whose choices are provider spellings (model names, resolutions): the same in every language.
SPELLING_OPTIONS = frozenset({"model", "resolution", "quality"})
TRANSLATED = frozenset(
    {
        TranslationContextLocation.command_description,
        TranslationContextLocation.group_description,
        TranslationContextLocation.parameter_description,
        TranslationContextLocation.choice_name,
    }
)


def is_word_choice(option: str, value: object) -> bool:
    """Whether a choice is a word to translate (a style, a motion, a switch) rather than a provider spelling."""
    return isinstance(value, str) and option not in SPELLING_OPTIONS


def choice_name(option: str, value: str | int | float) -> str | locale_str:
    """The name a choice is shown with: its spelling, marked for translation when it is a word."""
    return locale_str(str(value)) if is_word_choice(option, value) else str(value)


class CommandTranslator(app_commands.Translator):
    """Looks descriptions and choice names up in the catalogs; None for everything else (never an empty string)."""

    def __init__(self, source: Catalogs | None = None) -> None:
        self._source = source
        self._catalogs: Catalogs | None = None

    async def load(self) -> None:
        self._catalogs = self._source or catalogs()

    async def translate(self, string: locale_str, locale: Locale, context: TranslationContextTypes) -> str | None:
        if context.location not in TRANSLATED or self._catalogs is None:
            return None
        language = locale.value
        if language == SOURCE_LANGUAGE or language not in self._catalogs.languages:
            return None
        return self._catalogs.lookup(language, string.message)

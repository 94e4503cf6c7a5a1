"""The languages the bot speaks and their gettext catalogs (one domain, ``bot``; sources in ``locales/``).

Adding a language is one catalog, ``locales/<ll_CC>/LC_MESSAGES/bot.po``, and one entry in LANGUAGES (README,
"Languages"). Messages are written in English, the source language; a placeholder is ``{name}`` (str.format).
"""

from __future__ import annotations

import gettext
from collections.abc import Mapping
from functools import cache
from pathlib import Path

#: The languages the bot speaks, as Discord spells their locales; the first is the source language.
LANGUAGES: tuple[str, ...] = ("en-US", "zh-CN")
SOURCE_LANGUAGE = LANGUAGES[0]
DOMAIN = "bot"
LOCALE_DIR = Path(__file__).parent / "locales"


def catalog_dir(language: str) -> str:
    """The gettext folder name of a language: ``zh-CN`` -> ``zh_CN``."""
    return language.replace("-", "_")


def language_for(locale: str | None) -> str:
    """The language to answer in for a Discord locale: one the bot speaks, else the source language."""
    return locale if locale in LANGUAGES else SOURCE_LANGUAGE


#: The ``/settings language`` choice that follows the server's preferred locale (the default).
AUTO = "auto"
#: The choices of ``/settings language``; their names are part of the contract.
LANGUAGE_SETTINGS: tuple[str, ...] = (AUTO, *LANGUAGES)


def server_language(setting: str, guild_locale: str | None) -> str:
    """The language of a server's public messages: what an admin chose, else its preferred locale's."""
    return setting if setting in LANGUAGES else language_for(guild_locale)


class Catalogs:
    """The compiled catalogs of the languages the bot speaks; the source language needs none."""

    def __init__(self, locale_dir: Path = LOCALE_DIR, languages: tuple[str, ...] = LANGUAGES) -> None:
        self._by_language: dict[str, gettext.NullTranslations] = {languages[0]: gettext.NullTranslations()}
        for language in languages[1:]:
            compiled = locale_dir / catalog_dir(language) / "LC_MESSAGES" / f"{DOMAIN}.mo"
            if not compiled.is_file():
                raise FileNotFoundError(
                    f"The {language} catalog is not compiled ({compiled}); run `make translations`."
                )
            with compiled.open("rb") as file:
                self._by_language[language] = gettext.GNUTranslations(file)

    @property
    def languages(self) -> Mapping[str, gettext.NullTranslations]:
        return self._by_language

    def _of(self, language: str) -> gettext.NullTranslations:
        try:
            return self._by_language[language]
        except KeyError:
            raise ValueError(f"The bot does not speak {language!r}; use one of {', '.join(LANGUAGES)}.") from None

    def lookup(self, language: str, message: str) -> str | None:
        """The translation of a message, or None when the catalog has none (or the language is the source)."""
        translated = self._of(language).gettext(message)
        return translated if translated and translated != message else None

    def text(self, language: str, message: str, /, **values: object) -> str:
        return self._of(language).gettext(message).format(**values)

    def plural(self, language: str, singular: str, plural: str, count: int, /, **values: object) -> str:
        return self._of(language).ngettext(singular, plural, count).format(count=count, **values)


@cache
def catalogs() -> Catalogs:
    """The bot's own catalogs, loaded once."""
    return Catalogs()


def translate(language: str, message: str, /, **values: object) -> str:
    """A message in one of LANGUAGES, its ``{name}`` placeholders filled from ``values``."""
    return catalogs().text(language, message, **values)


def translate_plural(language: str, singular: str, plural: str, count: int, /, **values: object) -> str:
    """A message that depends on a count (``{count}`` is filled too), with the language's plural rules."""
    return catalogs().plural(language, singular, plural, count, **values)


def mark(message: str) -> str:
    """Marks a message for extraction where it is defined; translate it where it is shown."""
    return message

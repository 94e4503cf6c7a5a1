"""Extraction of the messages into the template ``locales/bot.pot``: ``python -m bot.i18n.extract [OUTPUT]`` from the
project's root (``make catalog`` also updates every language's .po from it).

Each message carries its kind as an extracted comment (``#. i18n: <kind>``) so a test can hold every translation to
Discord's limit for that kind: write ``# i18n: button label`` on the line before a marked message; ``locale_str``
strings (the command surface) are tagged by the extractor itself.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from babel.messages.extract import extract_python
from babel.messages.frontend import CommandLineInterface

from bot.i18n import LOCALE_DIR
from bot.i18n.commands import is_word_choice
from providers import Capabilities

COMMENT_TAG = "i18n:"
#: Discord's length limit for each kind of string; a message without a kind is a message's content.
LIMITS: Mapping[str, int] = {
    "description": 100,
    "choice name": 100,
    "button label": 80,
    "select option": 100,
    "modal title": 45,
    "embed title": 256,
    "field name": 256,
    "field value": 1024,
    "embed description": 4096,
    "footer": 2048,
    "message": 2000,
}
DEFAULT_KIND = "message"
KEYWORDS = ("locale_str", "translate:2", "translate_plural:2,3", "mark", "UserError")
SOURCES = (".",)
MAPPING = Path(__file__).with_name("babel.cfg")

Extracted = Iterator[tuple[int, str | None, str | tuple[str, ...], list[str]]]


def python_marked(
    fileobj: IO[bytes], keywords: Collection[str], comment_tags: Collection[str], options: Any
) -> Extracted:
    """Babel's Python extractor; a ``locale_str`` is a description or a choice name of a slash command."""
    # Babel's annotation names the tuple's fields wrongly: the extractor yields (lineno, funcname, messages, comments).
    found = cast(
        Iterator[tuple[int, str | None, Any, list[str]]],
        extract_python(fileobj, dict.fromkeys(keywords), comment_tags, options),
    )
    for lineno, funcname, messages, comments in found:
        if funcname == "locale_str":
            comments = [*comments, f"{COMMENT_TAG} description"]
        yield lineno, funcname, messages, comments


def capability_strings(
    fileobj: IO[bytes], keywords: Collection[str], comment_tags: Collection[str], options: Any
) -> Extracted:
    """The descriptions and word-valued choices of the capability tables a module defines (it is imported: some
    descriptions are built by code)."""
    path = Path(fileobj.name).resolve().relative_to(Path.cwd())
    module = importlib.import_module(".".join(path.with_suffix("").parts))
    source = fileobj.read().decode()
    seen: set[str] = set()
    for table in vars(module).values():
        if not isinstance(table, Capabilities):
            continue
        for spec in table.options:
            lineno = _line_of(source, spec.description) or _line_of(source, f'"{spec.name}"')
            strings = [(spec.description, "description")]
            strings += [(str(value), "choice name") for value in spec.choices if is_word_choice(spec.name, value)]
            for message, kind in strings:
                if message not in seen:
                    seen.add(message)
                    yield lineno, None, message, [f"{COMMENT_TAG} {kind}"]


def _line_of(source: str, text: str) -> int:
    index = source.find(text)
    return source.count("\n", 0, index) + 1 if index >= 0 else 0


def extract(output: Path) -> None:
    """Writes the template of every marked message in bot/, cogs/ and the capability tables."""
    arguments = ["pybabel", "--quiet", "extract", "-F", str(MAPPING), "--no-default-keywords", "-c", COMMENT_TAG]
    for keyword in KEYWORDS:
        arguments += ["-k", keyword]
    arguments += ["--project", "animate-bot", "--sort-by-file", "-w", "120", "-o", str(output), *SOURCES]
    CommandLineInterface().run(arguments)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    extract(Path(sys.argv[1]) if len(sys.argv) > 1 else LOCALE_DIR / "bot.pot")

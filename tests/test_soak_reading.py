"""The soak reads the bot's own words: its patterns must match the sentences the bot writes."""

from __future__ import annotations

from pathlib import Path

from babel.messages.pofile import read_po

from tests.soak import RESTARTED

TEMPLATE = Path(__file__).resolve().parent.parent / "bot" / "i18n" / "locales" / "bot.pot"


def test_the_soak_recognises_the_sentence_of_a_command_the_bot_restarted_before_making() -> None:
    with TEMPLATE.open("rb") as source:
        catalog = read_po(source)
    sentences = [message.id for message in catalog if isinstance(message.id, str) and "restarted before" in message.id]
    assert sentences
    for sentence in sentences:
        assert RESTARTED.search(sentence), sentence

"""English sentences written outside the bot's messages, shown in the reader's language.

The providers' validation and media checks (providers/ knows nothing of Discord or of languages), the providers'
reasons for an ended task and the reasons the scheduler writes into the ledger (bot/jobs/reasons.py; kept in English
there, for logs and `/jobs` history in every process) are fixed sentences with a few values. Each shape is a catalog
message; a sentence that matches a shape is read back in the reader's language with the same values, and one that
matches none (a provider's own words) is shown as it is.
"""

from __future__ import annotations

import re
from functools import cache

from bot.i18n import SOURCE_LANGUAGE, mark, translate
from bot.jobs import reasons

#: The shapes, most specific first; ``{name}`` matches any text (as little as possible).
SHAPES: tuple[str, ...] = (
    # providers/options.py
    mark("`{name}` is not an option of {command}; remove it."),
    mark("Add `{name}`: {provider} needs it ({description})."),
    mark("`{name}` must be true or false."),
    mark("`{name}` must be a whole number."),
    mark("`{name}` must be a number."),
    mark("`{name}` must be text."),
    mark("`{name}` must be one of {allowed} (you gave {value})."),
    mark("`{name}` must be between {low} and {high} (you gave {value})."),
    mark("`{name}` is {length} characters long but {provider} accepts at most {limit}; shorten it."),
    # The providers' rules between options.
    mark("Vidu {model} makes videos of {shortest} to {longest} seconds; change `duration`."),
    mark("Vidu {model} makes videos of {seconds} seconds; change `duration`."),
    mark("Vidu {model} renders at {resolutions}; change `resolution`."),
    mark("Vidu {model} ignores `movement_amplitude`; leave it out or choose another model."),
    mark("Vidu cannot make audio in off-peak mode; turn off `audio` or `off_peak`."),
    mark("`voice_id` only works with audio; set `audio` to true or leave the voice out."),
    mark("PixVerse {model} makes videos of {span}; change `duration`."),
    mark("PixVerse {model} cannot make {duration} s at 1080p; pick a shorter `duration` or a lower `quality`."),
    mark("PixVerse {model} does not take `{option}`; leave it out or choose model {models}."),
    mark("`motion_mode` fast only makes 5-second videos; set `duration` to 5 or use normal motion."),
    mark("`lip_sync_voice` needs `lip_sync_text`: add the words to speak, or leave the voice out."),
    mark("Pick a `style` or describe one in `prompt`: HiDream needs one of the two to restyle a video."),
    # providers/media.py
    mark("That file is not an image; attach a PNG, JPEG or WebP picture."),
    mark("That file is empty; attach a PNG, JPEG or WebP picture."),
    mark("That file is a video, not a picture; attach a PNG, JPEG or WebP picture."),
    mark("That image looks damaged or incomplete; re-export it or upload it again."),
    mark("That file is not an MP4 video; export it as MP4 and attach it again."),
    mark("That file is a picture, not a video; attach an MP4 video instead."),
    mark("That video is incomplete or not a valid MP4; re-export it as MP4 or upload it again."),
    mark("That file has no video track; attach an MP4 that contains video."),
    # The reasons the scheduler writes into the ledger.
    *reasons.TEMPLATES,
    # The providers' own reasons for an ended task.
    mark("HiDream's content review rejected this video."),
    mark("HiDream could not generate this video."),
    mark("HiDream finished without a video."),
    mark("PixVerse finished without a video."),
    mark("PixVerse's content review rejected this video; its credits are refunded."),
    mark("PixVerse could not generate this video."),
    mark("PixVerse deleted this video."),
    mark("Vidu finished without a video."),
    mark("Vidu's content review rejected this video."),
    mark("The task was cancelled before it started."),
    mark("The Vidu account ran out of credits."),
    mark("Vidu could not generate this video."),
    mark("Vidu could not generate this video{detail}."),
)


@cache
def _patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    compiled = []
    for shape in SHAPES:
        parts = re.split(r"\{(\w+)\}", shape)
        pattern = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>.+?)" for index, part in enumerate(parts))
        compiled.append((re.compile(pattern, re.DOTALL), shape))
    return tuple(compiled)


def localized(language: str, sentence: str) -> str:
    """The sentence in ``language`` when its shape is known; otherwise (or in the source language) as it is."""
    if language == SOURCE_LANGUAGE:
        return sentence
    for pattern, shape in _patterns():
        found = pattern.fullmatch(sentence)
        if found:
            return translate(language, shape, **found.groupdict())
    return sentence


def localized_all(language: str, text: str) -> str:
    """Several sentences joined by spaces (as validation reports them), each localized on its own."""
    if language == SOURCE_LANGUAGE:
        return text
    whole = localized(language, text)
    if whole != text:
        return whole
    return " ".join(localized(language, sentence) for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z`])", text))

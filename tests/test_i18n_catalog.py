"""The catalogs: every message translated into every language with the same placeholders and within Discord's limit
for its kind, the template in step with the source, and the functions messages are read through."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from string import Formatter

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from bot.i18n import (
    DOMAIN,
    LANGUAGES,
    LOCALE_DIR,
    SOURCE_LANGUAGE,
    Catalogs,
    catalog_dir,
    language_for,
    translate,
)
from bot.i18n.extract import COMMENT_TAG, DEFAULT_KIND, LIMITS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"
TRANSLATED = LANGUAGES[1:]


def read(path: Path) -> Catalog:
    with path.open("rb") as file:
        return read_po(file)


def source_of(language: str) -> Path:
    return LOCALE_DIR / catalog_dir(language) / "LC_MESSAGES" / f"{DOMAIN}.po"


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(text) if field is not None}


def kind_of(message: Message) -> str:
    kinds = [comment.removeprefix(COMMENT_TAG).strip() for comment in message.auto_comments]
    return next((kind for kind in kinds if kind), DEFAULT_KIND)


def forms_of(translation: Message | None) -> list[str]:
    """A translation's text, one per plural form."""
    if translation is None:
        return []
    return [translation.string] if isinstance(translation.string, str) else list(translation.string)


def problems(template: Catalog, catalog: Catalog) -> list[str]:
    """What is wrong with a language's catalog, one sentence per message."""
    found = []
    for message in template:
        if not message.id:
            continue
        msgid = message.id if isinstance(message.id, str) else message.id[0]
        kind = kind_of(message)
        if kind not in LIMITS:
            found.append(f"{msgid!r}: unknown kind {kind!r}; use one of {', '.join(LIMITS)}.")
            continue
        limit = LIMITS[kind]
        sources = [message.id] if isinstance(message.id, str) else list(message.id)
        translation = catalog.get(message.id, message.context)
        forms = forms_of(translation)
        if translation is None or translation.fuzzy or not forms or not all(forms):
            found.append(f"{msgid!r} has no {catalog.locale_identifier} translation.")
            continue
        expected = [placeholders(source) for source in sources]
        for form in forms:
            if placeholders(form) not in expected:
                found.append(f"{msgid!r}: the translation {form!r} has placeholders {sorted(placeholders(form))}.")
            if len(form) > limit:
                found.append(f"{msgid!r}: the translation is {len(form)} characters; a {kind} takes {limit}.")
        for source in sources:
            if len(source) > limit:
                found.append(f"{msgid!r} is {len(source)} characters; a {kind} takes {limit}.")
    kept = {message.id for message in template}
    found += [
        f"{message.id!r} is not in the template; run make catalog." for message in catalog if message.id not in kept
    ]
    return found


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_with_its_placeholders_within_discords_limits(language: str) -> None:
    template = read(TEMPLATE)
    assert len(template) > 50
    assert problems(template, read(source_of(language))) == []


def broken(change: str) -> tuple[Catalog, Catalog]:
    """The real template and zh-CN catalog with one thing wrong."""
    template, catalog = read(TEMPLATE), copy.deepcopy(read(source_of("zh-CN")))
    described = next(message for message in catalog if message.id == "Animate an image with Vidu.")
    template.add("Job {job_id} was cancelled.", auto_comments=[f"{COMMENT_TAG} message"])
    catalog.add("Job {job_id} was cancelled.", "任务 {job_id} 已取消。")
    template.add(("{count} job", "{count} jobs"), auto_comments=[f"{COMMENT_TAG} field value"])
    catalog.add(("{count} job", "{count} jobs"), ("{count} 个任务",))
    if change == "missing":
        described.string = ""
    elif change == "fuzzy":
        described.flags.add("fuzzy")
    elif change == "too long":
        described.string = "用 Vidu 把图片变成视频" * 10
    elif change == "placeholder dropped":
        catalog["Job {job_id} was cancelled."].string = "任务已取消。"
    elif change == "placeholder added":
        catalog["Job {job_id} was cancelled."].string = "{user} 的任务 {job_id} 已取消。"
    elif change == "plural placeholder renamed":
        catalog[("{count} job", "{count} jobs")].string = ("{number} 个任务",)
    elif change == "unknown kind":
        template["Job {job_id} was cancelled."].auto_comments = [f"{COMMENT_TAG} tooltip"]
    elif change == "not in the template":
        catalog.add("Gone.", "不见了。")
    return template, catalog


@pytest.mark.parametrize(
    "change",
    [
        "missing",
        "fuzzy",
        "too long",
        "placeholder dropped",
        "placeholder added",
        "plural placeholder renamed",
        "unknown kind",
        "not in the template",
    ],
)
def test_the_check_finds_a_broken_catalog(change: str) -> None:
    assert problems(*broken("none")) == []
    assert len(problems(*broken(change))) == 1


def test_the_template_is_in_step_with_the_source(tmp_path: Path) -> None:
    fresh = tmp_path / "bot.pot"
    command = [sys.executable, "-m", "bot.i18n.extract", str(fresh)]
    subprocess.run(command, cwd=ROOT, check=True, timeout=120)  # noqa: S603

    def entries(catalog: Catalog) -> dict[object, list[str]]:
        return {message.id: sorted(message.auto_comments) for message in catalog if message.id}

    assert entries(read(TEMPLATE)) == entries(read(fresh)), "the template is stale: run `make catalog`"


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_is_the_source_compiled(language: str) -> None:
    compiled = Catalogs()
    for message in read(source_of(language)):
        if message.id and isinstance(message.id, str):
            assert compiled.lookup(language, message.id) == message.string, "stale .mo: run `make translations`"


def test_members_get_the_language_of_their_locale_or_english() -> None:
    assert language_for("zh-CN") == "zh-CN"
    assert language_for("en-US") == "en-US"
    assert language_for("fr") == SOURCE_LANGUAGE
    assert language_for("zh-TW") == SOURCE_LANGUAGE
    assert language_for(None) == SOURCE_LANGUAGE


def test_a_message_is_read_in_each_language_with_its_placeholders_filled() -> None:
    assert translate("en-US", "Animate an image with Vidu.") == "Animate an image with Vidu."
    assert translate("zh-CN", "Animate an image with Vidu.") == "用 Vidu 把图片变成视频。"
    assert translate("zh-CN", "Not in any catalog, job {job_id}.", job_id=7) == "Not in any catalog, job 7."
    with pytest.raises(ValueError, match="does not speak 'fr'"):
        translate("fr", "Animate an image with Vidu.")


def test_counts_follow_each_languages_plural_rules(tmp_path: Path) -> None:
    catalog = Catalog(locale="zh_CN", domain=DOMAIN)
    catalog.add(("{count} job left", "{count} jobs left"), ("剩余 {count} 个任务",))
    folder = tmp_path / "zh_CN" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / f"{DOMAIN}.mo").open("wb") as file:
        write_mo(file, catalog)
    with (folder / f"{DOMAIN}.po").open("wb") as file:
        write_po(file, catalog)
    catalogs = Catalogs(tmp_path)
    assert catalogs.plural("en-US", "{count} job left", "{count} jobs left", 1) == "1 job left"
    assert catalogs.plural("en-US", "{count} job left", "{count} jobs left", 3) == "3 jobs left"
    assert catalogs.plural("zh-CN", "{count} job left", "{count} jobs left", 1) == "剩余 1 个任务"
    assert catalogs.plural("zh-CN", "{count} job left", "{count} jobs left", 3) == "剩余 3 个任务"


def test_a_catalog_that_was_never_compiled_is_named_with_the_command_that_compiles_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"The zh-CN catalog is not compiled .* run `make translations`"):
        Catalogs(tmp_path)

"""Every sentence the bot can write into the ledger as a job's reason (shown on its card, by /jobs cancel and in the
log line) has a catalog message: found in the code itself, so a sentence added later without one fails here."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.i18n import translate
from bot.i18n.sentences import SHAPES, localized
from bot.jobs import reasons

ROOT = Path(__file__).resolve().parent.parent
#: The modules that write a job's reason or the status its card shows, and the providers' reasons for an ended task.
#: A provider's own status is shown on no card (only the scheduler's, while it asks whether a send arrived).
WRITERS = {
    "bot/jobs/scheduler.py": ("error_reason", "reason", "provider_status"),
    "bot/jobs/service.py": ("error_reason", "reason", "provider_status"),
    "bot/jobs/admission.py": ("error_reason", "reason", "provider_status"),
    "bot/ui/presenter.py": ("error_reason", "reason", "provider_status"),
    "providers/hidream/client.py": ("error_reason",),
    "providers/pixverse/client.py": ("error_reason",),
    "providers/vidu/client.py": ("error_reason",),
}
#: Where a sentence goes into the ledger: the reason argument of these calls, and the module's keywords anywhere.
REASON_ARGUMENT = {"_end": 3, "_finish": 3, "_time_out": 2, "expire_queued": 1, "JobNotCancellable": 0}
PLACEHOLDER = re.compile(r"\{(\w*)\}")


def template_of(node: ast.expr) -> str | None:
    """A literal as the catalog would write it: an f-string's values become ``{placeholders}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append("{value}")
        return "".join(parts)
    return None


class Writers:
    """The literal sentences that reach a reason in one module, following names and the module's own helpers."""

    def __init__(self, path: Path, keywords: tuple[str, ...] = ("error_reason", "reason", "provider_status")) -> None:
        self.keywords = keywords
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.functions = {
            node.name: node for node in ast.walk(self.tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }

    def sinks(self) -> Iterator[tuple[ast.expr, ast.AST]]:
        for function in self.functions.values():
            for node in ast.walk(function):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                index = REASON_ARGUMENT.get(name)
                if index is not None and len(node.args) > index:
                    yield node.args[index], function
                for keyword in node.keywords:
                    if keyword.arg in self.keywords:
                        yield keyword.value, function
            for node in ast.walk(function):
                # Values of a dict written to the ledger, e.g. {"provider_status": ...}.
                if isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value in self.keywords:
                            yield value, function

    def literals(self, node: ast.expr, scope: ast.AST, seen: set[int] | None = None) -> Iterator[tuple[int, str]]:
        seen = set() if seen is None else seen
        if id(node) in seen:
            return
        seen.add(id(node))
        template = template_of(node)
        if template is not None:
            yield node.lineno, template
            return
        if isinstance(node, ast.Name):
            for assigned in ast.walk(scope):
                if isinstance(assigned, ast.Assign) and any(
                    isinstance(target, ast.Name) and target.id == node.id for target in assigned.targets
                ):
                    yield from self.literals(assigned.value, scope, seen)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions:
            helper = self.functions[node.func.id]
            for returned in ast.walk(helper):
                if isinstance(returned, ast.Return) and returned.value is not None:
                    yield from self.literals(returned.value, helper, seen)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                yield from self.literals(child, scope, seen)


def written_sentences() -> list[tuple[str, str]]:
    found = []
    for relative, keywords in WRITERS.items():
        writers = Writers(ROOT / relative, keywords)
        for sink, scope in writers.sinks():
            for line, template in writers.literals(sink, scope):
                if re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", template):
                    found.append((f"{relative}:{line}", template))
    return found


def is_shape(template: str) -> bool:
    """Whether a catalog shape reads this template, whatever its values are."""
    sample = PLACEHOLDER.sub("X", template).replace("{{", "{").replace("}}", "}")
    return any(localized_by(shape, sample) for shape in SHAPES)


def localized_by(shape: str, sentence: str) -> bool:
    parts = re.split(r"\{(\w+)\}", shape)
    pattern = "".join(re.escape(part) if index % 2 == 0 else ".+?" for index, part in enumerate(parts))
    return re.fullmatch(pattern, sentence, re.DOTALL) is not None


def test_every_reason_the_code_writes_into_the_ledger_has_a_catalog_message() -> None:
    sentences = written_sentences()
    missing = [f"{where}: {template!r}" for where, template in sentences if not is_shape(template)]
    assert missing == [], "write it in bot/jobs/reasons.py (or add its shape to bot/i18n/sentences.py)"


def test_the_search_finds_a_sentence_written_as_a_reason(tmp_path: Path) -> None:
    module = tmp_path / "writer.py"
    module.write_text(
        "async def fail(self, job, name):\n"
        "    reason = f'{name} went away for a while.'\n"
        "    await self._end(job, 'failed', None, reason)\n"
        "    await self.store.release({job.id: {'provider_status': 'asking ' + name}})\n"
    )
    writers = Writers(module)
    found = [template for sink, scope in writers.sinks() for _, template in writers.literals(sink, scope)]
    assert found == ["{value} went away for a while.", "asking "]
    assert not is_shape(found[0])


def test_every_reason_template_is_a_shape_read_in_the_readers_language() -> None:
    assert reasons.TEMPLATES
    for template in reasons.TEMPLATES:
        assert template in SHAPES
        values = {name: f"<{name}>" for name in PLACEHOLDER.findall(template)}
        sentence = template.format(**values)
        chinese = localized("zh-CN", sentence)
        assert chinese == translate("zh-CN", template, **values)
        assert chinese != sentence
        assert all(value in chinese for value in values.values())


@pytest.mark.parametrize(
    ("sentence", "chinese"),
    [
        (reasons.provider_gone("kling"), "本机器人已不再配置 kling,因此不再跟进这个任务。"),
        (reasons.queue_timeout(timedelta(hours=6)), "任务排队超过 6 小时,因此未发送。"),
        (reasons.checking_receipt("Vidu"), "确认 Vidu 是否已收到"),
    ],
)
def test_reasons_written_by_the_scheduler_read_in_chinese(sentence: str, chinese: str) -> None:
    assert localized("zh-CN", sentence) == chinese

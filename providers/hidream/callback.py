"""HiDream's completion callbacks (seeds 000 and 001 ``notify_url``; notes/providers.md §1 fact 5).

They are not signed, so one proves nothing: it only names tasks to ask HiDream about now. Its body is the
task result, inside the usual envelope or not (undocumented), one task or a list of them.
"""

from __future__ import annotations

from typing import Any

from providers.callbacks import Callback, CallbackNews, json_object, text

#: The most tasks one callback may name; a real one names one.
MAX_TASKS = 20


def read_callback(callback: Callback) -> CallbackNews:
    body = json_object(callback)
    inner: Any = body.get("result") if "result" in body else body
    items = inner if isinstance(inner, list) else [inner]
    task_ids: list[str] = []
    for item in items[:MAX_TASKS]:
        if not isinstance(item, dict):
            continue
        for field in ("task_id", "main_task_id"):
            task_id = text(item.get(field))
            if task_id and task_id not in task_ids:
                task_ids.append(task_id)
    return CallbackNews(task_ids=tuple(task_ids), finished=True)

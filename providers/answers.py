"""Reading provider answers as the providers really send them.

Real answers carry ``null`` where the documents show a value, and numbers where they show strings (or
the reverse); third-party clients (ComfyUI's comfy_api_nodes, PixVerse's MCP server) declare those
fields optional and loosely typed. An optional field that is null or unreadable therefore takes its
default instead of making the whole answer unreadable: for a create, an unreadable answer would mean
"outcome unknown" and send a job that did start into reconciliation. Required fields stay strict.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidatorFunctionWrapHandler, model_validator

log = logging.getLogger(__name__)


class Answer(BaseModel):
    """Base of every response model: optional fields accept null, numbers read as text where text is typed."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    @model_validator(mode="wrap")
    @classmethod
    def _lenient(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        optional = {name for name, field in cls.model_fields.items() if not field.is_required()}
        kept = {key: value for key, value in data.items() if value is not None or key not in optional}
        try:
            return handler(kept)
        except ValidationError as exc:
            unreadable = {error["loc"][0] for error in exc.errors() if error["loc"] and error["loc"][0] in optional}
            if not unreadable:
                raise
            log.debug("%s: ignoring unreadable optional fields %s", cls.__name__, sorted(map(str, unreadable)))
            return handler({key: value for key, value in kept.items() if key not in unreadable})


class UnknownStates:
    """Warns once per client for each state value the documents do not list; such a task counts as running."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._seen: set[str] = set()

    def __call__(self, value: str) -> None:
        if value in self._seen:
            return
        self._seen.add(value)
        log.warning("%s answered the undocumented task state %r; treating it as still running", self.provider, value)

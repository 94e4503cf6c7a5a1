"""Option specifications and the validation that every capability table shares.

A capability table lists a provider's options (type, choices, ranges, lengths) and the rules between
them. It is the single source for validating a request and, later, for the slash-command choices.
Every violation is one plain sentence that tells a Discord user what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from providers.media import ImageLimits, VideoLimits

OptionValue = str | int | float | bool
Params = Mapping[str, OptionValue]
Rule = Callable[[Params], Iterable[str]]


class Operation(StrEnum):
    """What a job asks a provider to do."""

    IMAGE_TO_VIDEO = "image_to_video"
    STYLIZE = "stylize"


@dataclass(frozen=True)
class OptionSpec:
    """One user-facing option, named as in the slash command."""

    name: str
    type: type[OptionValue]
    description: str
    choices: tuple[OptionValue, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    max_length: int | None = None
    required: bool = False
    #: What the provider uses when the option is left out, for display; None when it decides itself.
    default: OptionValue | None = None
    #: Values read as one of the choices without being offered (old spellings, stored jobs).
    aliases: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Capabilities:
    """Everything a provider accepts for one operation."""

    provider: str
    command: str
    operation: Operation
    options: tuple[OptionSpec, ...]
    media: ImageLimits | VideoLimits
    rules: tuple[Rule, ...] = ()
    #: Options the rules hinge on: when one of them is given but invalid, the rules are not run.
    rules_need: tuple[str, ...] = ()
    _by_name: dict[str, OptionSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {spec.name: spec for spec in self.options})

    def option(self, name: str) -> OptionSpec:
        """The spec of one option; KeyError when the provider has no such option."""
        return self._by_name[name]

    def validate(self, params: Params) -> list[str]:
        """Return every violation in ``params`` as a plain sentence; an empty list means valid."""
        problems: list[str] = []
        for name in params:
            if name not in self._by_name:
                problems.append(f"`{name}` is not an option of {self.command}; remove it.")
        valid: dict[str, OptionValue] = {}
        for spec in self.options:
            value = params.get(spec.name)
            if value is None:
                if spec.required:
                    problems.append(f"Add `{spec.name}`: {self.provider} needs it ({spec.description}).")
                continue
            problem = _check_value(self.provider, spec, value)
            if problem:
                problems.append(problem)
            else:
                valid[spec.name] = value
        # Rules see only well-typed values; without the values they hinge on they would mislead.
        if all(name in valid or name not in params for name in self.rules_need):
            resolved = self.resolve(valid)
            for rule in self.rules:
                problems.extend(rule(resolved))
        return problems

    def resolve(self, params: Params) -> dict[str, OptionValue]:
        """The given values, aliases replaced by what they stand for, and each left-out option's default filled in."""
        resolved: dict[str, OptionValue] = {}
        for spec in self.options:
            value = params.get(spec.name, spec.default)
            if isinstance(value, str):
                value = spec.aliases.get(value, value)
            if value is not None:
                resolved[spec.name] = value
        return resolved


def _check_value(provider: str, spec: OptionSpec, value: OptionValue) -> str | None:
    if not _has_type(value, spec.type):
        return f"`{spec.name}` must be {_type_phrase(spec.type)}."
    if spec.choices and value not in spec.choices and value not in spec.aliases:
        allowed = ", ".join(str(choice) for choice in spec.choices)
        return f"`{spec.name}` must be one of {allowed} (you gave {value})."
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = spec.min_value, spec.max_value
        if (low is not None and value < low) or (high is not None and value > high):
            return f"`{spec.name}` must be between {_number(low)} and {_number(high)} (you gave {value})."
    if isinstance(value, str) and spec.max_length is not None and len(value) > spec.max_length:
        return (
            f"`{spec.name}` is {len(value):,} characters long but {provider} accepts at most "
            f"{spec.max_length:,}; shorten it."
        )
    return None


def _has_type(value: OptionValue, expected: type[OptionValue]) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _type_phrase(expected: type[OptionValue]) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[expected]


def _number(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else str(value)


def join_choices(values: Iterable[OptionValue]) -> str:
    """``a, b or c``, for sentences that list what is allowed."""
    items = [str(value) for value in values]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]

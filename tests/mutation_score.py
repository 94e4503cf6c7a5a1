"""Prints the share of mutants killed, overall and per module, from the results `mutmut run` left in mutants/.

Run by `make mutate` after mutmut; alone: `.venv/bin/python -m tests.mutation_score`.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"

# mutmut's exit codes for a mutant (mutmut/stats.py): 1 and 3 are a failing test run; a timeout means a test hung
# or ran away on the mutant, which the suite notices too.
KILLED = {1, 3, 36, 37, 24, -24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}
SKIPPED = {34}


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, exit_code: int | None) -> None:
        if exit_code is None:
            self.outcomes["not run"] += 1
        elif exit_code in KILLED:
            self.outcomes["killed"] += 1
        elif exit_code in SURVIVED:
            self.outcomes["survived"] += 1
        elif exit_code in NO_TESTS:
            self.outcomes["no test"] += 1
        elif exit_code in SKIPPED:
            self.outcomes["skipped"] += 1
        else:
            self.outcomes["suspicious"] += 1

    def merge(self, other: Tally) -> None:
        self.outcomes.update(other.outcomes)

    @property
    def run(self) -> int:
        # A mutant that no selected test reaches counts against the score: the suite would not notice it.
        return sum(self.outcomes.values()) - self.outcomes["not run"] - self.outcomes["skipped"]

    def score(self) -> str:
        return f"{100 * self.outcomes['killed'] / self.run:.1f} %" if self.run else "-"


def mutated_modules() -> list[str]:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(settings["tool"]["mutmut"]["only_mutate"])


def tally(module: str) -> Tally | None:
    meta = MUTANTS / f"{module}.meta"
    if not meta.exists():
        return None
    result = Tally()
    for exit_code in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].values():
        result.add(exit_code)
    return result


def main() -> int:
    tallies = {module: tally(module) for module in mutated_modules()}
    if not any(tallies.values()):
        print("No mutmut results in mutants/: run `make mutate` first.", file=sys.stderr)
        return 1
    columns = ("killed", "survived", "no test", "suspicious", "not run")
    header = f"{'module':<24}{'score':>9}" + "".join(f"{name:>12}" for name in columns)
    print(header)
    print("-" * len(header))
    overall = Tally()
    for module, module_tally in tallies.items():
        if module_tally is None:
            print(f"{module:<24}{'-':>9}   (no mutants made yet)")
            continue
        overall.merge(module_tally)
        counts = "".join(f"{module_tally.outcomes[name]:>12}" for name in columns)
        print(f"{module:<24}{module_tally.score():>9}{counts}")
    print("-" * len(header))
    counts = "".join(f"{overall.outcomes[name]:>12}" for name in columns)
    print(f"{'overall':<24}{overall.score():>9}{counts}")
    print("score: killed / run (mutants no selected test reaches count as not killed; 'not run' are left out).")
    print("Survivors: .venv/bin/mutmut results; one of them: .venv/bin/mutmut show NAME")
    return 0


if __name__ == "__main__":
    sys.exit(main())

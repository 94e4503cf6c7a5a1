# Every target builds or refreshes .venv from requirements.lock by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench mutate soak soak-short lock clean

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s)" % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m bot

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check bot cogs providers tests
	$(BIN)/ruff format --check bot cogs providers tests
	$(BIN)/mypy --strict bot cogs providers

format: $(STAMP)
	$(BIN)/ruff check --fix bot cogs providers tests
	$(BIN)/ruff format bot cogs providers tests

bench: $(STAMP)
	$(BIN)/python -m tests.bench

# Mutation testing of the store, the scheduler and the presenter ([tool.mutmut] in pyproject.toml); hours on two
# cores, so not in .ci/run. Results are kept in mutants/ and reused: a rerun tries only mutants of changed functions
# (rm -rf mutants for a fresh run). MUTANTS='bot.ui.presenter.*' limits a run to the mutants whose names match.
MUTANTS ?=
mutate: $(STAMP)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/python -m tests.mutation_score

# The seeded soak (README, "Soak"): SOAK_SEED=n replays a plan; soak-short is the CI plan (fixed seed).
soak: $(STAMP)
	$(BIN)/python -m tests.soak

soak-short: $(STAMP)
	$(BIN)/python -m tests.soak --short

# Regenerates the lock from pyproject.toml (needs uv; nothing else does).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

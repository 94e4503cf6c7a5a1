# Every target builds or refreshes .venv from requirements.lock by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The gettext catalogs (README, "Languages"): .po sources kept in git, .mo compiled here.
LOCALES := bot/i18n/locales
CATALOGS := $(wildcard $(LOCALES)/*/LC_MESSAGES/bot.po)
COMPILED := $(CATALOGS:.po=.mo)

# `make demo`: the real bot against the simulated Discord and providers, on http://127.0.0.1:8765 (DEMO_PORT).
.PHONY: run demo screenshots test lint format bench mutate soak soak-short lock clean translations catalog

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s)" % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(MAKE) --no-print-directory translations
	@touch $(STAMP)

# Compiles each language's catalog; a .po newer than its .mo is compiled again.
translations: $(COMPILED)

$(LOCALES)/%/LC_MESSAGES/bot.mo: $(LOCALES)/%/LC_MESSAGES/bot.po
	$(BIN)/pybabel --quiet compile --domain bot --locale $* --directory $(LOCALES)

# After changing a marked message: the template extracted again, every language's .po updated from it (new
# messages untranslated, changed ones fuzzy), to be translated and committed.
catalog: $(STAMP)
	$(BIN)/python -m bot.i18n.extract $(LOCALES)/bot.pot
	$(BIN)/pybabel --quiet update --domain bot --input-file $(LOCALES)/bot.pot --output-dir $(LOCALES) --width 120

run: $(STAMP) translations
	$(BIN)/python -m bot

# No credentials and no network: every service the bot talks to is simulated on loopback (README, "Demo").
demo: $(STAMP) translations
	$(BIN)/python -m bot demo

# The README's screenshots of the demo (a card mid-progress and done), taken by the browser test in headless Chromium.
screenshots: $(STAMP) translations
	DEMO_SCREENSHOTS=docs $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_demo_browser.py

test: $(STAMP) translations
	$(BIN)/python -m pytest -q

lint: $(STAMP) translations
	$(BIN)/ruff check bot cogs providers simulators tests
	$(BIN)/ruff format --check bot cogs providers simulators tests
	$(BIN)/mypy --strict bot cogs providers simulators

format: $(STAMP)
	$(BIN)/ruff check --fix bot cogs providers simulators tests
	$(BIN)/ruff format bot cogs providers simulators tests

bench: $(STAMP) translations
	$(BIN)/python -m tests.bench

# Mutation testing of the store, the scheduler and the presenter ([tool.mutmut] in pyproject.toml); hours on two
# cores, so not in .ci/run. Results are kept in mutants/ and reused: a rerun tries only mutants of changed functions
# (rm -rf mutants for a fresh run). MUTANTS='bot.ui.presenter.*' limits a run to the mutants whose names match.
MUTANTS ?=
mutate: $(STAMP) translations
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/python -m tests.mutation_score

# The seeded soak (README, "Soak"): SOAK_SEED=n replays a plan; soak-short is the CI plan (fixed seed).
soak: $(STAMP) translations
	$(BIN)/python -m tests.soak

soak-short: $(STAMP) translations
	$(BIN)/python -m tests.soak --short

# Regenerates the lock from pyproject.toml (needs uv; nothing else does).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

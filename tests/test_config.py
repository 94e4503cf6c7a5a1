"""Settings: defaults, parsing, and one plain sentence per bad variable."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from bot.config import ConfigError, Settings, load_settings
from bot.jobs.scheduler_settings import scheduler_settings
from bot.providers import build_providers
from providers import Operation

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("DISCORD_TOKEN", "discord-secret-token")


def test_defaults_with_only_the_token() -> None:
    settings = load_settings(env_file=None)
    assert settings.discord_token.get_secret_value() == "discord-secret-token"
    assert settings.discord_guild_ids == ()
    assert settings.database_url.get_secret_value() == "sqlite:///data/bot.db"
    assert settings.ledger_location == Path("data/bot.db")
    assert settings.inputs_folder == Path("data/inputs")
    assert settings.lease_seconds == 30.0
    assert settings.hidream_base_url == "https://www.hidreamai.com"
    assert settings.pixverse_base_url == "https://app-api.pixverse.ai"
    assert settings.vidu_base_url == "https://api.vidu.com"
    assert settings.vidu_auth_scheme == "Token"
    assert settings.poll_interval_seconds == 5.0
    assert settings.progress_edit_seconds == 10.0
    assert settings.log_level == "INFO"
    assert settings.hidream_api_key.get_secret_value() == ""


def test_reads_dotenv_file_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("VIDU_API_KEY=from-file\nLOG_LEVEL=debug\nPOLL_INTERVAL_SECONDS=2.5\n")
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "7")
    settings = load_settings(env_file=env_file)
    assert settings.vidu_api_key.get_secret_value() == "from-file"
    assert settings.log_level == "DEBUG"
    assert settings.poll_interval_seconds == 7.0


def test_guild_ids_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_GUILD_IDS", "123456789012345678, 234567890123456789,")
    assert load_settings(env_file=None).discord_guild_ids == (123456789012345678, 234567890123456789)


def test_base_urls_keep_their_path_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDU_BASE_URL", "https://relay.example/vidu/")
    monkeypatch.setenv("VIDU_AUTH_SCHEME", "Bearer")
    settings = load_settings(env_file=None)
    assert settings.vidu_base_url == "https://relay.example/vidu"
    assert settings.vidu_auth_scheme == "Bearer"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DISCORD_GUILD_IDS", "123,abc", "DISCORD_GUILD_IDS is not valid (got '123,abc'): set it to server ids"),
        ("POLL_INTERVAL_SECONDS", "soon", "POLL_INTERVAL_SECONDS is not valid (got 'soon'): set it to seconds"),
        ("POLL_INTERVAL_SECONDS", "0", "POLL_INTERVAL_SECONDS is not valid (got '0')"),
        ("PROGRESS_EDIT_SECONDS", "0.5", "PROGRESS_EDIT_SECONDS is not valid (got '0.5'): set it to the least"),
        ("HIDREAM_BASE_URL", "www.hidreamai.com", "HIDREAM_BASE_URL is not valid (got 'www.hidreamai.com')"),
        ("VIDU_AUTH_SCHEME", "Basic", "VIDU_AUTH_SCHEME is not valid (got 'Basic'): set it to Token"),
        ("DATABASE_URL", "postgres:///bot", "DATABASE_URL is not valid: set it to a SQLite URL"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL is not valid (got 'loud'): set it to one of DEBUG"),
        ("PUBLIC_URL", "bot.example.org", "PUBLIC_URL is not valid (got 'bot.example.org'): set it to the https URL"),
        ("CALLBACK_POLL_SECONDS", "0", "CALLBACK_POLL_SECONDS is not valid (got '0'): set it to seconds between"),
        ("SHARD_COUNT", "0", "SHARD_COUNT is not valid (got '0'): set it to the total number of gateway shards"),
        ("SHARD_COUNT", "two", "SHARD_COUNT is not valid (got 'two'): set it to the total number of gateway shards"),
        ("SHARD_IDS", "0,1", "SHARD_IDS is not valid (got '0,1'): set it to the shard ids this process connects"),
        ("SHARD_IDS", "zero", "SHARD_IDS is not valid (got 'zero'): set it to the shard ids this process connects"),
        ("SHARD_IDS", "-1", "SHARD_IDS is not valid (got '-1'): set it to the shard ids this process connects"),
    ],
)
def test_a_malformed_value_gets_one_sentence_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    message = str(caught.value)
    assert message.startswith(expected)
    assert message.count("\n") == 0
    assert message.endswith(".")


@pytest.mark.parametrize(
    ("count", "ids", "expected"),
    [
        ("1", "", None),
        ("4", "", None),
        ("4", " 3, 1 ", [3, 1]),
        ("4", "0", [0]),
        ("4", "none", []),
        ("4", "NONE", []),
    ],
)
def test_shard_ids_to_connect(
    monkeypatch: pytest.MonkeyPatch, count: str, ids: str, expected: list[int] | None
) -> None:
    monkeypatch.setenv("SHARD_COUNT", count)
    monkeypatch.setenv("SHARD_IDS", ids)
    settings = load_settings(env_file=None)
    assert settings.shard_count == int(count)
    assert settings.gateway_shard_ids == expected


@pytest.mark.parametrize("ids", ["0,4", "1,1", "0,,2", "1;2", "none,1"])
def test_shard_ids_outside_the_count_or_twice_are_refused_in_one_sentence(
    monkeypatch: pytest.MonkeyPatch, ids: str
) -> None:
    monkeypatch.setenv("SHARD_COUNT", "4")
    monkeypatch.setenv("SHARD_IDS", ids)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == (
        f"SHARD_IDS is not valid (got {ids!r}): set it to the shard ids this process connects, separated by "
        "commas, each a whole number from 0 to SHARD_COUNT - 1 and none twice (empty: all of them; none: no gateway)."
    )


def test_missing_token_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCORD_TOKEN")
    with pytest.raises(ConfigError, match=r"^DISCORD_TOKEN is not set: set it to the bot token"):
        load_settings(env_file=None)


def test_every_bad_variable_is_reported_and_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "   ")
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    lines = str(caught.value).splitlines()
    assert lines == [
        "DISCORD_TOKEN is not valid: set it to the bot token from the Discord developer portal.",
        "LOG_LEVEL is not valid (got 'chatty'): set it to one of DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    ]


def test_python_m_bot_stops_with_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    env = {
        key: value for key, value in os.environ.items() if key.upper() not in {n.upper() for n in Settings.model_fields}
    }
    env["PYTHONPATH"] = str(ROOT)
    env["POLL_INTERVAL_SECONDS"] = "-1"
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "DISCORD_TOKEN is not set" in result.stderr
    assert "POLL_INTERVAL_SECONDS is not valid (got '-1')" in result.stderr


async def test_a_provider_with_an_empty_key_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXVERSE_API_KEY", "pv-key")
    monkeypatch.setenv("VIDU_API_KEY", "")
    settings = load_settings(env_file=None)
    async with aiohttp.ClientSession() as session:
        providers = build_providers(settings, session)
    assert list(providers) == ["pixverse"]
    assert providers["pixverse"].display_name == "PixVerse"


def test_scheduler_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDU_MAX_RUNNING", "3")
    monkeypatch.setenv("HIDREAM_STYLIZE_SUBMITS_PER_MINUTE", "0")
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "2")
    monkeypatch.setenv("VIDU_DEADLINE_MINUTES", "90")
    scheduler = scheduler_settings(load_settings(env_file=None))
    assert scheduler.poll_interval == 2
    assert scheduler.limits["vidu"].max_running == 3
    assert scheduler.limits["vidu"].deadline == timedelta(minutes=90)
    assert scheduler.limits["hidream"].max_running is None
    assert scheduler.limits["hidream"].submits_per_minute == {Operation.IMAGE_TO_VIDEO: 10}
    assert scheduler.limits["pixverse"].submits_per_minute == {}
    assert scheduler.queue_timeout == timedelta(hours=6)


def test_env_example_lists_every_setting_with_its_default() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(values) == {name.upper() for name in Settings.model_fields}
    defaults = Settings(_env_file=None, discord_token="x")
    for name, value in values.items():
        if name == "DISCORD_TOKEN":
            continue
        current = getattr(defaults, name.lower())
        if hasattr(current, "get_secret_value"):
            current = current.get_secret_value()
        if isinstance(current, tuple):
            current = ",".join(str(item) for item in current)
        if current is None:
            current = ""
        assert str(current) == value or float(current) == float(value), name


def test_a_postgresql_url_selects_the_shared_ledger_and_keeps_inputs_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:hunter2@db:5432/bot")
    settings = load_settings(env_file=None)
    assert settings.uses_postgres
    assert settings.ledger_location == "postgresql://bot:hunter2@db:5432/bot"
    assert settings.inputs_folder == Path("data/inputs")
    assert "hunter2" not in repr(settings)

    monkeypatch.setenv("INPUTS_DIR", "/shared/inputs")
    assert load_settings(env_file=None).inputs_folder == Path("/shared/inputs")


def test_a_database_url_of_another_kind_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://bot:hunter2@db/bot")
    with pytest.raises(ConfigError) as refused:
        load_settings(env_file=None)
    message = str(refused.value)
    assert message.startswith("DATABASE_URL is not valid: set it to a SQLite URL")
    assert "postgresql://" in message
    assert "hunter2" not in message


def test_a_lease_too_short_to_renew_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEASE_SECONDS", "1")
    with pytest.raises(ConfigError, match="LEASE_SECONDS is not valid"):
        load_settings(env_file=None)


def test_python_m_bot_without_a_token_says_how_to_try_it_without_credentials(tmp_path: Path) -> None:
    env = {
        key: value for key, value in os.environ.items() if key.upper() not in {n.upper() for n in Settings.model_fields}
    }
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(line.startswith("DISCORD_TOKEN is not set") for line in lines)
    assert lines[-1] == "To try the bot without any credentials, run `make demo` (or `python -m bot demo`)."

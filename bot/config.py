"""Settings, read once from the environment and ``.env``.

The variable names are a contract: the README, ``.env.example`` and deployment files use them.
A missing or malformed value stops the start with one sentence per variable that names it and says
what it expects. A provider whose key is empty is disabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from providers.hidream import DEFAULT_BASE_URL as HIDREAM_DEFAULT_URL
from providers.pixverse import DEFAULT_BASE_URL as PIXVERSE_DEFAULT_URL
from providers.vidu import DEFAULT_BASE_URL as VIDU_DEFAULT_URL

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")
NO_GATEWAY = "none"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which variable to fix and how."""


class Settings(BaseSettings):
    """Every setting of the bot. Each description says what the variable expects."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    discord_token: SecretStr = Field(description="the bot token from the Discord developer portal")
    discord_guild_ids: Annotated[tuple[int, ...], NoDecode] = Field(
        (),
        description="server ids separated by commas, like 123456789012345678,234567890123456789 "
        "(commands sync to these servers at once instead of globally)",
    )
    database_url: SecretStr = Field(
        SecretStr("sqlite:///data/bot.db"),
        description="a SQLite URL such as sqlite:///data/bot.db (a path after sqlite:///), or a PostgreSQL URL "
        "such as postgresql://bot:password@db:5432/bot for several processes",
    )
    inputs_dir: Path | None = Field(
        None,
        description="a folder for the kept inputs (images, videos) that every bot process can read; empty: beside "
        "the SQLite file, or data/inputs with PostgreSQL",
    )
    lease_seconds: float = Field(
        30.0,
        ge=5,
        le=600,
        description="seconds from 5 to 600: how long work a process took stays its own without being renewed "
        "(a process that dies leaves its work to the others after this long)",
    )
    hidream_api_key: SecretStr = Field(SecretStr(""), description="a HiDream API token, or empty to disable HiDream")
    hidream_base_url: str = Field(HIDREAM_DEFAULT_URL, description="an http(s) URL, optionally with a path prefix")
    pixverse_api_key: SecretStr = Field(SecretStr(""), description="a PixVerse API key, or empty to disable PixVerse")
    pixverse_base_url: str = Field(PIXVERSE_DEFAULT_URL, description="an http(s) URL, optionally with a path prefix")
    vidu_api_key: SecretStr = Field(SecretStr(""), description="a Vidu API key, or empty to disable Vidu")
    vidu_base_url: str = Field(VIDU_DEFAULT_URL, description="an http(s) URL, optionally with a path prefix")
    vidu_auth_scheme: Literal["Token", "Bearer"] = Field(
        "Token", description="Token (Vidu's own API) or Bearer (relays)"
    )
    poll_interval_seconds: float = Field(
        5.0, gt=0, le=3600, description="seconds before a job's first status check, more than 0 and at most 3600"
    )
    progress_edit_seconds: float = Field(
        10.0, ge=1, le=3600, description="the least seconds between two edits of a job's message, from 1 to 3600"
    )
    http_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="seconds to wait for a provider's answer, more than 0 and at most 600"
    )
    hidream_max_running: int = Field(
        0,
        ge=0,
        description="HiDream jobs running at once, a whole number (0 for no cap; HiDream's tiers allow 1 to 10)",
    )
    hidream_submits_per_minute: int = Field(
        10, ge=0, description="HiDream image-to-video jobs sent per minute, a whole number (0 for no cap)"
    )
    hidream_stylize_submits_per_minute: int = Field(
        2, ge=0, description="HiDream stylization jobs sent per minute, a whole number (0 for no cap)"
    )
    hidream_deadline_minutes: float = Field(30, gt=0, description="minutes a HiDream job may run, more than 0")
    pixverse_max_running: int = Field(
        0, ge=0, description="PixVerse jobs running at once, a whole number (0 for no cap)"
    )
    pixverse_submits_per_minute: int = Field(
        0, ge=0, description="PixVerse jobs sent per minute, a whole number (0 for no cap)"
    )
    pixverse_deadline_minutes: float = Field(30, gt=0, description="minutes a PixVerse job may run, more than 0")
    vidu_max_running: int = Field(
        5, ge=0, description="Vidu jobs running at once, a whole number (0 for no cap; Vidu's default is 5)"
    )
    vidu_submits_per_minute: int = Field(
        0, ge=0, description="Vidu jobs sent per minute, a whole number (0 for no cap)"
    )
    vidu_deadline_minutes: float = Field(60, gt=0, description="minutes a Vidu job may run (off-peak jobs: 49 hours)")
    stall_minutes: float = Field(
        10, gt=0, description="minutes without progress after which a job ends as timed out, more than 0"
    )
    queue_timeout_hours: float = Field(6, gt=0, description="hours a job may wait in the queue, more than 0")
    input_retention_hours: float = Field(
        72, gt=0, description="hours a job's prepared input is kept for Retry and Reroll, more than 0"
    )
    job_retention_days: float = Field(
        90, ge=0, description="days finished jobs and their history are kept, more than 0 (0 keeps everything)"
    )
    max_active_jobs_per_user: int = Field(
        3, ge=0, description="jobs one member may have unfinished at once, a whole number (0 for no limit)"
    )
    max_jobs_per_user_per_day: int = Field(
        0, ge=0, description="jobs one member may start per UTC day, a whole number (0 for no limit)"
    )
    max_jobs_per_guild_per_day: int = Field(
        0, ge=0, description="jobs one server may start per UTC day, a whole number (0 for no limit)"
    )
    shard_count: int = Field(
        1, ge=1, description="the total number of gateway shards across every process, a whole number of at least 1"
    )
    shard_ids: str = Field(
        "",
        description="the shard ids this process connects, separated by commas, each a whole number from 0 to "
        "SHARD_COUNT - 1 and none twice (empty: all of them; none: no gateway)",
    )
    public_url: str = Field(
        "",
        description="the https URL under which the providers reach this bot's callback listener, such as "
        "https://bot.example.org (empty: no callbacks, every job is polled)",
    )
    callback_port: int = Field(
        8090,
        ge=1,
        le=65535,
        description="the port the callback listener binds, from 1 to 65535 (not HEALTH_PORT: only this one faces "
        "the internet)",
    )
    callback_host: str = Field("0.0.0.0", description="the address the callback listener binds")  # noqa: S104
    callback_poll_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="seconds between status checks of a job whose provider calls back, more than 0 and at most "
        "3600 (the fallback when a callback is lost)",
    )
    pixverse_webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="the webhook secret from PixVerse's console, or empty to keep polling PixVerse",
    )
    health_port: int = Field(
        8080, ge=0, le=65535, description="the port of the /healthz endpoint, from 1 to 65535 (0 turns it off)"
    )
    health_host: str = Field("0.0.0.0", description="the address /healthz listens on")  # noqa: S104 - in a container
    log_level: str = Field("INFO", description="one of DEBUG, INFO, WARNING, ERROR or CRITICAL")

    @field_validator("discord_guild_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            if not all(part.isdigit() for part in parts):
                raise ValueError("not a list of numbers")
            return tuple(int(part) for part in parts)
        return value

    @field_validator("shard_ids")
    @classmethod
    def _shard_ids(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value or value.lower() == NO_GATEWAY:
            return value.lower()
        parts = [part.strip() for part in value.split(",")]
        if not all(part.isdigit() for part in parts):
            raise ValueError("not a list of shard ids")
        ids = [int(part) for part in parts]
        if len(set(ids)) != len(ids):
            raise ValueError("a shard id is given twice")
        count = info.data.get("shard_count")
        if isinstance(count, int) and any(shard_id >= count for shard_id in ids):
            raise ValueError("a shard id is not below SHARD_COUNT")
        return ",".join(str(shard_id) for shard_id in ids)

    @field_validator("discord_token")
    @classmethod
    def _token_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("empty")
        return value

    @field_validator("hidream_base_url", "pixverse_base_url", "vidu_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest.split("/")[0]:
            raise ValueError("not an http(s) URL")
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        scheme, _, rest = value.partition("://")
        host = rest.split("/")[0]
        if scheme not in ("http", "https") or not host or "?" in value or "#" in value:
            raise ValueError("not an http(s) base URL")
        return value.rstrip("/")

    @field_validator("inputs_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        ledger_location(value.get_secret_value())
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError("not a log level")
        return level

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.get_secret_value().startswith(POSTGRES_PREFIXES)

    @property
    def ledger_location(self) -> Path | str:
        """The SQLite file, or the PostgreSQL URL, the DATABASE_URL names."""
        return ledger_location(self.database_url.get_secret_value())

    @property
    def gateway_shard_ids(self) -> list[int] | None:
        """The shards this process connects: None for all of them, an empty list for no gateway at all."""
        if not self.shard_ids:
            return None
        if self.shard_ids == NO_GATEWAY:
            return []
        return [int(part) for part in self.shard_ids.split(",")]

    @property
    def inputs_folder(self) -> Path:
        """Where prepared inputs are kept: INPUTS_DIR, else beside the SQLite file (or in data/)."""
        if self.inputs_dir is not None:
            return self.inputs_dir
        location = self.ledger_location
        return (location.parent if isinstance(location, Path) else Path("data")) / "inputs"


def ledger_location(url: str) -> Path | str:
    """The SQLite file, or the PostgreSQL URL, a database URL names; ValueError in one sentence otherwise."""
    if url.startswith(POSTGRES_PREFIXES):
        if not url.split("://", 1)[1].split("/")[0]:
            raise ValueError("a postgresql:// URL needs a host, as in postgresql://bot:password@db:5432/bot")
        return url
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        return Path(url.removeprefix(SQLITE_PREFIX))
    raise ValueError(
        "a database URL starts with sqlite:/// (then a path) or postgresql:// (then a server), not "
        f"{url.split('://', 1)[0] if '://' in url else 'a bare path'}"
    )


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read the settings, or raise ConfigError with one sentence per bad variable."""
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """One sentence per variable: its name, what is wrong, what it expects. Secret values never appear."""
    sentences: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        info = Settings.model_fields.get(field)
        variable = field.upper()
        expects = info.description if info and info.description else "a valid value"
        if error["type"] == "missing":
            sentences.setdefault(variable, f"{variable} is not set: set it to {expects}.")
            continue
        given = error.get("input")
        secret = info is not None and info.annotation is SecretStr
        shown = "" if secret or not isinstance(given, str) else f" (got {given!r})"
        sentences.setdefault(variable, f"{variable} is not valid{shown}: set it to {expects}.")
    return "\n".join(sentences.values())

"""``python -m bot check`` and ``python -m bot health`` against the fake Discord and the fake providers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import main
from bot.check import render, run_checks
from bot.config import Settings
from simulators.fake_discord import FakeDiscord, patch_discord
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu

KEYS = {"hidream": "hd-check-key", "pixverse": "pv-check-key", "vidu": "vd-check-key"}


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, Any]]:
    async with (
        FakeDiscord() as discord_fake,
        FakeHiDream(api_key=KEYS["hidream"]) as hd,
        FakePixVerse(api_key=KEYS["pixverse"], credit_monthly=300, credit_package=20) as pv,
        FakeVidu(api_key=KEYS["vidu"]) as vd,
    ):
        yield {"discord": discord_fake, "hidream": hd, "pixverse": pv, "vidu": vd}


def settings_for(fakes: dict[str, Any], tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"discord_token": fakes["discord"].token, "database_url": f"sqlite:///{tmp / 'bot.db'}"}
    for name, key in KEYS.items():
        values[f"{name}_api_key"] = key
        values[f"{name}_base_url"] = fakes[name].base_url
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def test_everything_configured_and_working(fakes: dict[str, Any], tmp_path: Path) -> None:
    with patch_discord(fakes["discord"]):
        rows = await run_checks(settings_for(fakes, tmp_path))
    assert [(row.name, row.ok) for row in rows] == [
        ("Discord", True),
        ("HiDream", True),
        ("PixVerse", True),
        ("Vidu", True),
        ("Callbacks", True),
    ]
    by_name = {row.name: row for row in rows}
    assert by_name["Callbacks"].status == "off: jobs are polled"
    assert "PUBLIC_URL" in by_name["Callbacks"].fix
    assert by_name["Discord"].status == f"logged in as {fakes['discord'].bot_user.username}"
    assert by_name["PixVerse"].credits == "320"
    assert by_name["Vidu"].credits == "100000"
    assert by_name["HiDream"].credits == ""
    table = render(rows)
    assert table.splitlines()[0].split() == ["service", "status", "credits", "fix"]
    assert "FAIL" not in table


async def test_bad_keys_and_unreachable_hosts_say_what_to_fix(fakes: dict[str, Any], tmp_path: Path) -> None:
    settings = settings_for(
        fakes,
        tmp_path,
        discord_token="not-the-token",
        pixverse_api_key="wrong",
        vidu_base_url="http://127.0.0.1:9",
        hidream_api_key="",
    )
    with patch_discord(fakes["discord"]):
        rows = await run_checks(settings)
    by_name = {row.name: row for row in rows}
    assert (by_name["Discord"].ok, by_name["Discord"].status) == (False, "token refused")
    assert "DISCORD_TOKEN" in by_name["Discord"].fix
    assert (by_name["PixVerse"].ok, by_name["PixVerse"].status) == (False, "key refused")
    assert by_name["PixVerse"].fix.startswith("PIXVERSE_API_KEY was refused")
    assert (by_name["Vidu"].ok, by_name["Vidu"].status) == (False, "unreachable")
    assert "VIDU_BASE_URL" in by_name["Vidu"].fix
    assert (by_name["HiDream"].ok, by_name["HiDream"].status) == (True, "disabled")
    table = render(rows)
    for secret in ("not-the-token", "wrong"):
        assert secret not in table


async def test_the_command_prints_the_table_and_fails_when_something_is_wrong(
    fakes: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", fakes["discord"].token)
    monkeypatch.setenv("VIDU_API_KEY", "wrong")
    monkeypatch.setenv("VIDU_BASE_URL", fakes["vidu"].base_url)
    with patch_discord(fakes["discord"]):
        code = await asyncio.to_thread(main, ["check"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  Vidu" in out
    assert "ok    Discord" in out
    assert "VIDU_API_KEY was refused" in out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_check_says_whether_public_url_reaches_the_callback_listener(
    fakes: dict[str, Any], tmp_path: Path
) -> None:
    port = free_port()
    reachable = settings_for(
        fakes, tmp_path, public_url=f"http://127.0.0.1:{port}", callback_port=port, callback_host="127.0.0.1"
    )
    with patch_discord(fakes["discord"]):
        rows = {row.name: row for row in await run_checks(reachable)}
    assert rows["Callbacks"].ok
    assert rows["Callbacks"].status == f"http://127.0.0.1:{port} reaches the listener (hidream, vidu)"

    # PUBLIC_URL points at something that is not the listener (here the fake Vidu, which answers 404).
    elsewhere = settings_for(fakes, tmp_path, public_url=fakes["vidu"].base_url, callback_port=free_port())
    with patch_discord(fakes["discord"]):
        rows = {row.name: row for row in await run_checks(elsewhere)}
    assert not rows["Callbacks"].ok
    assert rows["Callbacks"].status == "HTTP 404 from something else"
    assert "CALLBACK_PORT" in rows["Callbacks"].fix

    nobody = settings_for(fakes, tmp_path, public_url=f"http://127.0.0.1:{free_port()}", callback_port=free_port())
    with patch_discord(fakes["discord"]):
        rows = {row.name: row for row in await run_checks(nobody)}
    assert (rows["Callbacks"].ok, rows["Callbacks"].status) == (False, "unreachable")

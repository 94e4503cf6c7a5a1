"""`python -m bot demo` over HTTP, as the page uses it: the page, the synced tree, a job from command to video."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from providers.hidream.capabilities import VIDEO_LIMITS
from providers.media import prepare_video
from tests.conftest import image_bytes
from tests.demo_process import Demo, start_demo

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(240)]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    yield from start_demo(tmp_path)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def state_until(
    http: aiohttp.ClientSession, demo: Demo, member: str, done: Callable[[dict[str, Any]], Any], within: float = 120
) -> Any:
    """The first page state (as ``member`` sees it) for which ``done`` answers something true."""
    async with asyncio.timeout(within):
        while True:
            state = await get_json(http, f"{demo.url}/api/state?member={member}")
            found = done(state)
            if found:
                return found
            await asyncio.sleep(0.2)


def messages(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [message for channel in state["channels"] for message in channel["messages"]]


def card_with_status(state: dict[str, Any], word: str) -> dict[str, Any] | None:
    for message in messages(state):
        for embed in message["embeds"]:
            fields = embed.get("fields") or []
            if fields and word in fields[0]["value"]:
                return message
    return None


async def run_command(http: aiohttp.ClientSession, demo: Demo, spec: dict[str, Any], **files: bytes) -> None:
    form = aiohttp.FormData()
    form.add_field("command", json.dumps(spec), content_type="application/json")
    for name, data in files.items():
        form.add_field(name, data, filename=f"{name}.png", content_type="image/png")
    async with http.post(f"{demo.url}/api/command", data=form) as response:
        assert response.status == 200, await response.text()


async def test_the_demo_runs_a_job_from_the_page_api_to_a_served_video(demo: Demo, http: aiohttp.ClientSession) -> None:
    assert "127.0.0.1" in demo.banner
    assert "loopback" in demo.banner
    started = re.search(r"started in (\d+\.\d) s", demo.banner)
    assert started is not None, demo.banner
    assert float(started.group(1)) > 0
    printed = demo.output.read_text()
    assert printed.index("Starting the demo") < printed.index("Demo ready")
    async with http.get(demo.url + "/") as page:
        assert page.status == 200
        html = await page.text()
    assert "/static/app.js" in html
    assert "http://" not in html.replace("http://127.0.0.1", "")  # nothing from the internet

    tree = await get_json(http, f"{demo.url}/api/commands")
    animate = next(command for command in tree if command["name"] == "animate")
    vidu = next(option for option in animate["options"] if option["name"] == "vidu")
    assert {"image", "prompt", "model", "duration"} <= {option["name"] for option in vidu["options"]}

    start = await get_json(http, f"{demo.url}/api/state")
    alice, bob, owner = (member["id"] for member in start["members"])
    assert [member["admin"] for member in start["members"]] == [False, False, True]
    async with http.post(f"{demo.url}/api/knobs", json={"speed": "fast"}) as response:
        assert response.status == 200

    spec = {"member": alice, "name": "animate", "subcommand": "vidu", "options": {"prompt": "a wave"}}
    await run_command(http, demo, spec, image=image_bytes(640, 360))
    done = await state_until(http, demo, alice, lambda state: card_with_status(state, "Done"))
    video = await state_until(
        http,
        demo,
        alice,
        lambda state: next(
            (
                attachment
                for message in messages(state)
                for attachment in message["attachments"]
                if attachment["content_type"] == "video/mp4"
            ),
            None,
        ),
    )
    async with http.get(demo.url + video["url"]) as served:
        assert served.status == 200
        assert served.content_type == "video/mp4"
        clip = prepare_video(await served.read(), VIDEO_LIMITS)
    # The demo's providers hand out a real 2 s clip (README, "Demo"), which the bot reads as it reads any video.
    assert clip.duration_seconds == pytest.approx(2.0, abs=0.05)
    assert (clip.width, clip.height) == (320, 180)

    state = await get_json(http, f"{demo.url}/api/state?member={alice}")
    job = state["jobs"][0]
    assert (job["provider"], job["state"], job["delivered"]) == ("vidu", "succeeded", True)
    assert [event["to"] for event in job["events"]][:3] == ["queued", "submitting", "running"]
    create = next(request for request in state["providers"]["vidu"]["requests"] if request["route"] == "create")
    assert "vd" not in json.dumps(create["headers"])
    assert create["headers"]["Authorization"].startswith("Token ••••")
    assert "characters)" in create["body"]["images"][0]

    reroll = next(
        item["custom_id"] for row in done["components"] for item in row["components"] if item.get("label") == "Reroll"
    )
    async with http.post(
        f"{demo.url}/api/click", json={"member": alice, "message": done["id"], "custom_id": reroll}
    ) as response:
        assert response.status == 200, await response.text()
    await state_until(http, demo, alice, lambda state: len(state["jobs"]) == 2)

    await run_command(http, demo, {"member": bob, "name": "jobs", "subcommand": "list", "options": {}})
    answer = await state_until(
        http,
        demo,
        bob,
        lambda state: next(
            (m for m in messages(state) if m["ephemeral"] and m["command"] == "jobs" and not m["loading"]), None
        ),
    )
    assert answer["invoker"] == "Bob"
    alice_sees = await get_json(http, f"{demo.url}/api/state?member={alice}")
    assert answer["id"] not in {message["id"] for message in messages(alice_sees)}
    owner_sees = await get_json(http, f"{demo.url}/api/state?member={owner}")
    assert answer["id"] not in {message["id"] for message in messages(owner_sees)}


async def test_the_demo_refuses_a_command_it_does_not_know_in_one_sentence(
    demo: Demo, http: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field("command", json.dumps({"name": "paint"}), content_type="application/json")
    async with http.post(f"{demo.url}/api/command", data=form) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "There is no command /paint; pick one the bot synced."

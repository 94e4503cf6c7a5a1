"""The demo's web server: the page, its JSON API, server-sent events and the loopback proxy for media."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from .world import DemoWorld

log = logging.getLogger(__name__)

STATIC: Final = Path(__file__).parent / "static"
DEFAULT_PORT: Final = 8765
HOST: Final = "127.0.0.1"
#: How often the event stream looks for changes; a look is a few counters, not a render.
LOOK_SECONDS: Final = 0.25
WORLD: Final = web.AppKey("world", DemoWorld)
SESSION: Final = web.AppKey("session", aiohttp.ClientSession)


class BadRequest(web.HTTPBadRequest):
    def __init__(self, sentence: str) -> None:
        super().__init__(text=json.dumps({"error": sentence}), content_type="application/json")


def build_app(world: DemoWorld) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[WORLD] = world
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/commands", commands)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/command", command)
    app.router.add_post("/api/click", click)
    app.router.add_post("/api/knobs", knobs)
    app.router.add_get("/files/{attachment_id}/{filename}", stored_file)
    app.router.add_get("/proxy/{target}/{tail:.*}", proxy)
    app.cleanup_ctx.append(client_session)
    return app


async def client_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[SESSION] = session
        yield


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def viewer_of(request: web.Request, world: DemoWorld) -> Any:
    return world.member(request.query.get("member"))


async def state(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    return web.json_response(await world.state(viewer_of(request, world)))


async def commands(request: web.Request) -> web.Response:
    return web.json_response(request.app[WORLD].commands())


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``change`` each time something the page shows may have changed."""
    world = request.app[WORLD]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    seen: tuple[int, ...] | None = None
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        while True:
            now = world.version()
            if now != seen:
                seen = now
                await response.write(f"event: change\ndata: {json.dumps(list(now))}\n\n".encode())
            await asyncio.sleep(LOOK_SECONDS)
    return response


def channel_id(world: DemoWorld, value: Any) -> int:
    ids = [channel.id for channel in world.discord.guild.channels]
    try:
        chosen = int(value) if value else world.discord.channel.id
    except ValueError:
        chosen = 0
    if chosen not in ids:
        raise BadRequest("The channel is not one of the server's; pick one from the list.")
    return chosen


async def command(request: web.Request) -> web.Response:
    """A slash command: multipart with a ``command`` JSON field (member, channel, name, subcommand, options)
    and one file part per attachment option."""
    world = request.app[WORLD]
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("Send the command as multipart/form-data with a 'command' field.")
    spec: dict[str, Any] = {}
    files: dict[str, tuple[str, bytes, str]] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
            continue
        if part.name == "command":
            spec = json.loads(await part.text())
        elif part.filename:
            files[part.name] = (part.filename, bytes(await part.read()), part.headers.get("Content-Type", ""))
    if not spec.get("name"):
        raise BadRequest("The 'command' field needs a name, such as animate.")
    try:
        record = await world.run_command(
            world.member(spec.get("member")),
            channel_id(world, spec.get("channel")),
            str(spec["name"]),
            spec.get("subcommand") or None,
            {key: value for key, value in (spec.get("options") or {}).items() if value not in (None, "")},
            files,
        )
    except (LookupError, ValueError) as exc:
        raise BadRequest(str(exc)) from exc
    return web.json_response({"interaction": str(record.id)})


async def click(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    body = await json_body(request)
    try:
        record = await world.click(
            world.member(body.get("member")),
            int(body["message"]),
            str(body["custom_id"]),
            [str(value) for value in body["values"]] if isinstance(body.get("values"), list) else None,
        )
    except (KeyError, LookupError, ValueError) as exc:
        raise BadRequest(f"That component is not on that message ({exc}); reload the page.") from exc
    return web.json_response({"interaction": str(record.id)})


async def knobs(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    body = await json_body(request)
    answer: dict[str, Any] = {}
    try:
        if "speed" in body:
            world.set_speed(str(body["speed"]))
        if "outcome" in body:
            world.next_outcome(str(body.get("provider")), str(body["outcome"]))
        if "concurrency" in body:
            world.set_concurrency(str(body.get("provider")), int(body["concurrency"]))
        if body.get("kill_token"):
            answer["killed"] = world.kill_latest_token()
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return web.json_response({"ok": True, **answer})


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("Send a JSON object.") from exc
    if not isinstance(body, dict):
        raise BadRequest("Send a JSON object.")
    return body


async def stored_file(request: web.Request) -> web.Response:
    try:
        found = request.app[WORLD].file(int(request.match_info["attachment_id"]))
    except ValueError:
        found = None
    if found is None:
        raise web.HTTPNotFound()
    data, content_type = found
    return web.Response(body=data, content_type=content_type, headers={"Accept-Ranges": "none"})


async def proxy(request: web.Request) -> web.Response:
    """GET of a fake's loopback URL (a provider's video or cover), for a browser that cannot reach it."""
    base = request.app[WORLD].proxy_target(request.match_info["target"])
    if base is None:
        raise web.HTTPNotFound()
    url = f"{base}/{request.match_info['tail']}"
    if request.query_string:
        url += f"?{request.query_string}"
    async with request.app[SESSION].get(url) as upstream:
        body = await upstream.read()
        return web.Response(
            status=upstream.status, body=body, content_type=upstream.content_type or "application/octet-stream"
        )


@contextlib.asynccontextmanager
async def serving(world: DemoWorld, port: int, host: str = HOST) -> AsyncIterator[int]:
    """The page served on ``host:port`` (0: a free port) while the block runs; yields the bound port."""
    runner = web.AppRunner(build_app(world), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def demo_port() -> int:
    value = os.environ.get("DEMO_PORT", "").strip()
    if not value:
        return DEFAULT_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"DEMO_PORT must be a port number from 1 to 65535, not {value!r}.")
    return int(value)

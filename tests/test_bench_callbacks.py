"""The benchmark's callback rows (tests/bench_callbacks.py) at small N: the main run with callbacks on, the
listener's load run, and the table made of them."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from simulators.fake_providers import FakeHiDream
from tests.bench import PROVIDERS, main_run
from tests.bench_callbacks import callbacks_table, load_plan, load_run, requests_per_job
from tests.test_fake_callbacks import HD_KEY, hd_create


async def test_the_main_run_with_callbacks_finishes_every_job_told_by_a_callback() -> None:
    run = await main_run(30, quick=True, callbacks=True)

    assert run["states"] == {"succeeded": 30}
    for name in PROVIDERS:
        per_job = requests_per_job(run, name)
        assert per_job["create"] == 1.0, name
        # One confirming query per job at most: none of these short tasks reached the long poll interval.
        assert 0 < per_job["query"] <= 1.0, name
        assert run["past_first_poll"][name] == 0
        taken = run["callbacks_taken"][name]
        assert taken.get("accepted", 0) >= 1, (name, taken)
        assert not {"rate_limited", "refused_401", "refused_400", "busy"} & set(taken), (name, taken)
    assert requests_per_job(run, "pixverse")["upload"] == 1.0
    assert run["delay_p95"] > 0


def test_the_load_plan_names_mostly_finished_jobs_and_wakes_each_named_running_job_once() -> None:
    plan = load_plan([f"f{index}" for index in range(100)], [f"r{index}" for index in range(50)], 200)

    assert len(plan) == 200
    running = [(task_id, state) for task_id, state in plan if task_id.startswith("r")]
    assert len(running) == 20
    assert sorted(state for _, state in running) == ["processing"] * 10 + ["success"] * 10
    assert all(state == "success" for task_id, state in plan if task_id.startswith("f"))


async def test_the_load_run_has_every_signed_callback_of_a_separate_sender_accepted() -> None:
    load = await load_run(rate=40, seconds=1.0, ledger_jobs=200)

    assert load["sender"]["statuses"] == {"200": 40}
    assert load["outcomes"]["ended_task"] + load["outcomes"]["accepted"] == 40
    assert load["states"].get("running woken", 0) >= 1
    assert load["cpu_seconds"] > 0
    assert load["wall_seconds"] > 0


async def test_the_table_gives_each_target_a_verdict() -> None:
    main = await main_run(9, quick=True, callbacks=True)
    load = await load_run(rate=20, seconds=0.5, ledger_jobs=100)

    text = callbacks_table(main, load)

    for label in ("hidream requests per job", "pixverse requests per job", "vidu requests per job"):
        assert label in text
    assert "image upload 1.00 more, not counted" in text
    assert "detection delay p95" in text
    assert "listener under 20 callbacks/s" in text
    rows = [line for line in text.splitlines() if "requests per job" in line or "detection" in line]
    assert all(line.rstrip().endswith(("PASS", "FAIL")) for line in rows)


async def test_a_fake_calls_back_from_the_source_address_it_is_given() -> None:
    remotes: list[str | None] = []
    arrived = asyncio.Event()

    async def record(request: web.Request) -> web.Response:
        remotes.append(request.remote)
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/callbacks/hidream", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        notify = f"http://127.0.0.1:{runner.addresses[0][1]}/callbacks/hidream"
        fake = FakeHiDream(api_key=HD_KEY, run_seconds=0.1)
        fake.callback_source = "127.0.0.7"
        async with fake, aiohttp.ClientSession() as http:
            await hd_create(http, fake, notify_url=notify)
            async with asyncio.timeout(10):
                await arrived.wait()
    finally:
        await runner.cleanup()
    assert remotes == ["127.0.0.7"]

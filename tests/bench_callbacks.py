"""Benchmark of callbacks (issue 15): ``python -m tests.bench_callbacks`` (``make bench`` prints it too).

The main run of tests/bench.py (10,000 jobs, or 300 with ``--quick``) runs again with callbacks on: the
scheduler has every provider in ``callback_providers`` and polls their jobs only every CALLBACK_POLL_INTERVAL
seconds (the production default of CALLBACK_POLL_SECONDS), a CallbackListener on loopback takes the callbacks
into ``scheduler.task_reported``, the clients are built as bot/providers.py builds them with PUBLIC_URL set to
that listener (HiDream's ``notify_url``, Vidu's ``callback_url``) and PIXVERSE_WEBHOOK_SECRET set, and the fakes
call back (PixVerse's console webhook is pointed at the listener). It counts provider requests per job by
route and the delay from a task's end at its fake to the scheduler publishing the job as finished.

The load run measures the listener alone under LOAD_RATE valid signed Vidu callbacks per second for
LOAD_SECONDS, spread evenly. Its process opens a SQLite ledger of LOAD_LEDGER_JOBS Vidu jobs with task ids
(LOAD_FINISHED_SHARE of them succeeded, the rest running), builds a Vidu client with a callback URL, a
Scheduler on that ledger and a CallbackListener serving ``scheduler.task_reported``, as bot/compose.py does.
The scheduler's loop is not started: the checks a callback wakes are the scheduler's work, measured in the
main run, and the loop would poll the running jobs at once (a restart spreads their checks over one poll
interval). The callbacks come from a separate process (so that neither its CPU nor its event loop is the
listener's), from LOAD_SOURCES loopback addresses as from a provider's pool of servers (the listener
limits each source to 100 a second). Most name finished jobs (a retry or a late duplicate: a nonce written,
a lookup, 200); the rest name running jobs, first ``processing`` (the start recorded), then ``success`` (the
job made due now). The listener's process measures its CPU time (``time.process_time``) and its RSS from the
first callback to the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from bot.callbacks import CallbackListener, callback_url
from bot.jobs.inputs import InputStore
from bot.jobs.scheduler import Scheduler, SchedulerSettings
from bot.store import Store
from providers.vidu import Vidu
from simulators.fake_providers import FakeVidu
from tests.bench import (
    CALLBACK_POLL_INTERVAL,
    POLL_ROUTES,
    PROVIDERS,
    QUICK_SIZE,
    RESULT_MARK,
    SUBMIT_ROUTES,
    TARGET_SIZE,
    CountingHandler,
    Result,
    free_port,
    measure,
    percentile,
    rss_kib,
    start_peak_rss,
    verdict,
)

#: The issue's targets.
MAX_REQUESTS_PER_JOB = 3.0
MAX_DETECTION_P95 = 1.0
#: The issue: the listener answers within a second.
MAX_ANSWER_SECONDS = 1.0

LOAD_RATE = 500
LOAD_SECONDS = 6.0
LOAD_LEDGER_JOBS = 10_000
LOAD_FINISHED_SHARE = 0.9
LOAD_SOURCES = 8
QUICK_LOAD_RATE = 100
QUICK_LOAD_SECONDS = 1.0
QUICK_LOAD_LEDGER_JOBS = 300
#: The sender's connections per source address.
SENDER_CONNECTIONS = 16
LOAD_KEY = "bench-vidu-key-0123456789"
#: How often the listener's process samples its CPU time and RSS during the load run.
LOAD_SAMPLE_SECONDS = 0.25
START_MARK = "LOAD-START"

#: The one request per job the bench does not make: the download of the finished video, which delivery (the
#: Discord side, not part of the bench) fetches once.
DOWNLOADS_PER_JOB = 1


# The load run: the listener's process.


def fill_load_ledger(path: Path, total: int, finished_share: float) -> tuple[list[str], list[str]]:
    """``total`` Vidu jobs with task ids written into a migrated SQLite ledger; the finished and the running
    jobs' task ids."""
    moment = datetime.now(UTC)
    stamp = moment.isoformat(timespec="microseconds")
    accepted = (moment - timedelta(seconds=60)).isoformat(timespec="microseconds")
    next_check = (moment + timedelta(seconds=CALLBACK_POLL_INTERVAL)).isoformat(timespec="microseconds")
    finished: list[str] = []
    running: list[str] = []
    rows = []
    draw = random.Random(total)
    for index in range(total):
        task_id = f"{900_000_000_000 + index}"
        done = draw.random() < finished_share
        (finished if done else running).append(task_id)
        rows.append(
            (
                f"load-{index}",
                100,
                1_000 + index % 500,
                "vidu",
                "image_to_video",
                json.dumps({"prompt": "a wave"}),
                "{}",
                "succeeded" if done else "running",
                task_id,
                stamp,
                stamp,
                accepted,
                stamp if done else None,
                None if done else next_check,
                "delivered" if done else "pending",
            )
        )
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO jobs (key, channel_id, user_id, provider, operation, params, media, state, task_id,"
            " created_at, updated_at, accepted_at, finished_at, next_check_at, delivery)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return finished, running


def load_plan(finished: list[str], running: list[str], total: int) -> list[tuple[str, str]]:
    """(task id, state) of each of ``total`` callbacks: one in ten names a running job (``processing`` the first
    time, ``success`` the next, so each named job is woken once), the rest a finished job."""
    draw = random.Random(total)
    plan: list[tuple[str, str]] = []
    reported: set[str] = set()
    named = running[: max(1, total // 20)]
    for index in range(total):
        if named and index % 10 == 0:
            task_id = named[(index // 10) % len(named)]
            plan.append((task_id, "success" if task_id in reported else "processing"))
            reported.add(task_id)
        else:
            plan.append((draw.choice(finished), "success"))
    return plan


async def load_run(rate: int, seconds: float, ledger_jobs: int) -> Result:
    """The listener, backed by a ledger of ``ledger_jobs`` jobs, under ``rate`` callbacks a second from a sender
    process; its CPU and RSS meanwhile."""
    outcomes: Counter[str] = Counter()
    handler = CountingHandler()
    logging.getLogger().addHandler(handler)
    with tempfile.TemporaryDirectory(prefix="bench-callbacks-") as folder:
        path = Path(folder) / "bot.db"
        await (await Store.open(path)).close()
        finished, running = fill_load_ledger(path, ledger_jobs, LOAD_FINISHED_SHARE)
        total = round(rate * seconds)
        plan = load_plan(finished, running, total)
        store = await Store.open(path)
        port = free_port()
        url = callback_url(f"http://127.0.0.1:{port}", "vidu")
        try:
            async with aiohttp.ClientSession() as session:
                # No request reaches this base URL: the scheduler's loop, which would poll, is not started.
                vidu = Vidu(session, SecretStr(LOAD_KEY), base_url="http://127.0.0.1:9", callback_url=url)
                scheduler = Scheduler(
                    store,
                    {"vidu": vidu},
                    InputStore(Path(folder) / "inputs"),
                    SchedulerSettings(callback_providers=frozenset({"vidu"})),
                )
                listener = CallbackListener(
                    {"vidu": vidu},
                    scheduler.task_reported,
                    host="127.0.0.1",
                    port=port,
                    on_outcome=lambda _, outcome: outcomes.update((outcome,)),
                )
                await listener.start()
                try:
                    measured = await flood(url, plan, rate)
                finally:
                    await listener.stop()
            states = await job_states(path)
        finally:
            await store.close()
    return {
        **measured,
        "rate": rate,
        "seconds": seconds,
        "ledger_jobs": ledger_jobs,
        "running_jobs": len(running),
        "callbacks": total,
        "outcomes": dict(outcomes),
        "states": states,
        "log": dict(handler.counts),
    }


async def job_states(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT state || CASE WHEN wake_pending = 1 THEN ' woken' WHEN started_at IS NOT NULL THEN ' started'"
            " ELSE '' END, COUNT(*) FROM jobs GROUP BY 1"
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


@dataclass
class Sample:
    at: float
    cpu: float
    rss_kib: int


async def flood(url: str, plan: list[tuple[str, str]], rate: int) -> Result:
    """Start the sender process on ``plan`` and sample this process while it sends."""
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench_callbacks",
        "--send",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert sender.stdin is not None
    assert sender.stdout is not None
    sender.stdin.write(json.dumps({"url": url, "key": LOAD_KEY, "rate": rate, "plan": plan}).encode())
    await sender.stdin.drain()
    sender.stdin.close()
    while (line := (await sender.stdout.readline()).decode()) and not line.startswith(START_MARK):
        pass
    rss_before = start_peak_rss()
    samples = [Sample(time.monotonic(), time.process_time(), rss_before)]
    reading = asyncio.create_task(sender.stdout.read())
    while not reading.done():
        await asyncio.wait([reading], timeout=LOAD_SAMPLE_SECONDS)
        samples.append(Sample(time.monotonic(), time.process_time(), rss_kib("VmRSS")))
    await sender.wait()
    sent: Result = json.loads(
        next(
            line for line in reversed(reading.result().decode().splitlines()) if line.startswith(RESULT_MARK)
        ).removeprefix(RESULT_MARK)
    )
    wall = samples[-1].at - samples[0].at
    cpu = samples[-1].cpu - samples[0].cpu
    # The busiest second: the CPU per second over the sample windows that add up to about one second.
    per_second = max(
        (
            (later.cpu - earlier.cpu) / (later.at - earlier.at)
            for earlier, later in zip(samples, samples[round(1 / LOAD_SAMPLE_SECONDS) :], strict=False)
        ),
        default=cpu / wall,
    )
    return {
        "sender": sent,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "cpu_per_second": cpu / wall,
        "cpu_busiest_second": per_second,
        "rss_before_mb": rss_before / 1024,
        "rss_after_mb": samples[-1].rss_kib / 1024,
        "rss_peak_growth_mb": (rss_kib("VmHWM") - rss_before) / 1024,
    }


# The load run: the sender's process.


async def send_plan(url: str, key: str, rate: int, plan: list[tuple[str, str]]) -> Result:
    """POST each callback of ``plan`` at its moment (``rate`` a second, evenly), signed as Vidu signs them, from
    LOAD_SOURCES loopback addresses in turn; each answer's status and time."""
    signer = FakeVidu(api_key=key)
    statuses: Counter[int] = Counter()
    answer_seconds: list[float] = []
    errors: Counter[str] = Counter()
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{2 + index}", 0), limit=SENDER_CONNECTIONS)
        )
        for index in range(LOAD_SOURCES)
    ]

    async def post(index: int, task_id: str, state: str) -> None:
        body = json.dumps(
            {
                "id": task_id,
                "state": state,
                "err_code": "",
                "credits": 20,
                "payload": f"animate:load-{index}",
                "bgm": False,
                "off_peak": False,
                "creations": [
                    {
                        "id": f"c{task_id}",
                        "url": f"https://cdn.example/{task_id}.mp4?X-Signature={'a' * 200}",
                        "cover_url": f"https://cdn.example/{task_id}.jpg?X-Signature={'a' * 200}",
                    }
                ]
                if state == "success"
                else [],
            }
        ).encode()
        started = time.monotonic()
        try:
            async with sessions[index % LOAD_SOURCES].post(
                url, data=body, headers=signer.sign_callback(url, body)
            ) as response:
                await response.read()
                statuses[response.status] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1
        answer_seconds.append(time.monotonic() - started)

    sends: list[asyncio.Task[None]] = []
    lateness = 0.0
    print(START_MARK, flush=True)
    started = time.monotonic()
    try:
        for index, (task_id, state) in enumerate(plan):
            due = started + index / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                lateness = max(lateness, -wait)
            sends.append(asyncio.create_task(post(index, task_id, state)))
        sent_seconds = time.monotonic() - started
        await asyncio.gather(*sends)
    finally:
        for session in sessions:
            await session.close()
    return {
        "sent": len(plan),
        "send_seconds": sent_seconds,
        "send_rate": (len(plan) - 1) / sent_seconds if sent_seconds > 0 else float(len(plan)),
        "late_max_seconds": lateness,
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "errors": dict(errors),
        "answer_p50": percentile(answer_seconds, 0.5),
        "answer_p95": percentile(answer_seconds, 0.95),
        "answer_max": max(answer_seconds, default=float("nan")),
        "sources": LOAD_SOURCES,
    }


# The table, in the parent process.


def requests_per_job(run: Result, name: str) -> dict[str, float]:
    """Requests per job of one provider in a main run: the create, the image upload (PixVerse's is a request of
    its own), the status queries, and everything else the fake answered (downloads of the fakes' media left
    out: the bench has no Discord side, so it downloads nothing)."""
    counts = run["requests"][name]
    jobs = max(1, counts["jobs"])
    routes: Mapping[str, int] = counts["routes"]
    upload = routes.get("upload", 0)
    create = sum(routes.get(route, 0) for route in SUBMIT_ROUTES[name]) - upload
    query = sum(routes.get(route, 0) for route in POLL_ROUTES[name])
    other = counts["all"] - create - upload - query
    return {"create": create / jobs, "upload": upload / jobs, "query": query / jobs, "other": other / jobs}


def counted_per_job(per_job: Mapping[str, float]) -> float:
    """What the target counts: create + queries + the one download (+ anything unexpected); not the upload."""
    return per_job["create"] + per_job["query"] + per_job["other"] + DOWNLOADS_PER_JOB


def requests_row(run: Result, name: str) -> tuple[str, str, str, str]:
    per_job = requests_per_job(run, name)
    counted = counted_per_job(per_job)
    parts = f"create {per_job['create']:.2f} + query {per_job['query']:.2f}"
    if per_job["other"]:
        parts += f" + other {per_job['other']:.2f}"
    measured = f"{counted:.2f} ({parts} + download {DOWNLOADS_PER_JOB}, not made here)"
    if per_job["upload"]:
        measured += f"; image upload {per_job['upload']:.2f} more, not counted"
    past = run["past_first_poll"][name]
    if past:
        measured += f"; {past:,} tasks ran past the {CALLBACK_POLL_INTERVAL:g} s poll"
    return (
        f"{name} requests per job",
        measured,
        f"≤ {MAX_REQUESTS_PER_JOB:g}",
        verdict(counted <= MAX_REQUESTS_PER_JOB),
    )


def callbacks_taken(run: Result) -> str:
    parts = []
    for name in PROVIDERS:
        sent = sum(count for event, count in run["callbacks_sent"][name].items() if event != "dropped")
        taken = ", ".join(f"{count:,} {outcome}" for outcome, count in sorted(run["callbacks_taken"][name].items()))
        parts.append(f"{name} {sent:,} sent ({taken or 'none taken'})")
    return "; ".join(parts)


def load_row(load: Result) -> tuple[str, str, str, str]:
    sender = load["sender"]
    statuses = ", ".join(f"{count:,} x {status}" for status, count in sender["statuses"].items())
    errors = sum(sender["errors"].values())
    measured = (
        f"{load['cpu_per_second']:.2f} CPU s per s (busiest second {load['cpu_busiest_second']:.2f}); "
        f"RSS {load['rss_before_mb']:.0f} -> {load['rss_after_mb']:.0f} MB "
        f"(peak +{load['rss_peak_growth_mb']:.1f} MB); "
        f"{sender['sent']:,} callbacks in {sender['send_seconds']:.1f} s ({sender['send_rate']:.0f}/s) from a "
        f"separate process, {sender['sources']} sources; answers {statuses}"
        + (f", {errors} failed" if errors else "")
        + f"; answered in p50 {sender['answer_p50'] * 1000:.1f} ms, p95 {sender['answer_p95'] * 1000:.1f} ms, "
        f"max {sender['answer_max'] * 1000:.0f} ms"
    )
    ok = (
        sender["statuses"] == {"200": sender["sent"]}
        and sender["send_rate"] >= 0.95 * load["rate"]
        and sender["answer_max"] < MAX_ANSWER_SECONDS
    )
    return (
        f"listener under {load['rate']} callbacks/s",
        measured,
        f"shown; every answer 200 within {MAX_ANSWER_SECONDS:g} s at ≥ 95% of the rate",
        verdict(ok),
    )


def callbacks_table(main: Result, load: Result) -> str:
    delays = [main["delay_p95_by_provider"][name] for name in PROVIDERS]
    rows = [
        (
            "jobs succeeded",
            f"{main['states'].get('succeeded', 0):,} of {main['n']:,}"
            + (
                f" ({json.dumps({k: v for k, v in main['states'].items() if k != 'succeeded'})})"
                if len(main["states"]) > 1
                else ""
            ),
            "",
            "",
        ),
        *(requests_row(main, name) for name in PROVIDERS),
        ("callbacks sent by the fakes", callbacks_taken(main), "", ""),
        (
            "detection delay p95",
            f"{main['delay_p95']:.2f} s (p50 {main['delay_p50']:.2f} s; hd/pv/vd "
            + "/".join(f"{delay:.2f}" for delay in delays)
            + " s)",
            f"< {MAX_DETECTION_P95:g} s",
            verdict(main["delay_p95"] < MAX_DETECTION_P95),
        ),
        (
            "peak RSS, CPU per 1,000 jobs",
            f"{main['peak_rss_mb']:.0f} MB, {main['cpu_per_1000']:.1f} s; wall {main['wall_seconds']:.0f} s",
            "",
            "",
        ),
        (
            "  ledger of the load run",
            f"{load['ledger_jobs']:,} Vidu jobs, {load['running_jobs']:,} running; after: "
            + ", ".join(f"{count:,} {state}" for state, count in sorted(load["states"].items())),
            "",
            "",
        ),
        load_row(load),
    ]
    header = (f"callbacks (issue 15), N = {main['n']:,}", "measured", "target", "")
    lines = [header, *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    logged = {kind: run["log"] for kind, run in (("main", main), ("load", load)) if run.get("log")}
    if logged:
        text.append(f"Log records at WARNING or above: {logged}")
    return "\n".join(text)


def measure_load(quick: bool) -> Result:
    """The load run in a fresh process, so that its CPU time and RSS are the listener's alone."""
    command = [sys.executable, "-m", "tests.bench_callbacks", "--load", *(["--quick"] if quick else [])]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith(RESULT_MARK))
    result: Result = json.loads(line.removeprefix(RESULT_MARK))
    return result


def callbacks_section(*, quick: bool) -> str:
    """The issue 15 targets: the main run with callbacks on (TARGET_SIZE jobs, QUICK_SIZE with ``quick``) and
    the listener under load."""
    main = measure("main", QUICK_SIZE if quick else TARGET_SIZE, quick, "--callbacks")
    load = measure_load(quick)
    return callbacks_table(main, load)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_callbacks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_SIZE}, a short load run: a smoke check")
    parser.add_argument("--load", action="store_true", help="only the load run; prints JSON")
    parser.add_argument(
        "--send", action="store_true", help="the load run's sender, its plan on stdin (started by the load run)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, handlers=[logging.NullHandler()])
    if args.send:
        plan = json.loads(sys.stdin.read())
        result = asyncio.run(send_plan(plan["url"], plan["key"], plan["rate"], [tuple(item) for item in plan["plan"]]))
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    if args.load:
        rate, seconds, jobs = (
            (QUICK_LOAD_RATE, QUICK_LOAD_SECONDS, QUICK_LOAD_LEDGER_JOBS)
            if args.quick
            else (LOAD_RATE, LOAD_SECONDS, LOAD_LEDGER_JOBS)
        )
        print(RESULT_MARK + json.dumps(asyncio.run(load_run(rate, seconds, jobs))), flush=True)
        return 0
    started = time.monotonic()
    command = "python -m tests.bench_callbacks" + (" --quick" if args.quick else "")
    print(f"{command} ({os.cpu_count()} CPUs, Python {platform.python_version()})", flush=True)
    print(callbacks_section(quick=args.quick))
    print(f"Total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

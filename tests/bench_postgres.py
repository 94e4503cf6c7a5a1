"""Benchmark of the scheduler on a shared PostgreSQL ledger: N jobs in flight across 3 processes.

``python -m tests.bench --postgres N`` (and ``make bench``, at N = 10,000) runs it; this module holds the
run and its table. The run itself is a subprocess (``python -m tests.bench_postgres run N [--quick]``), the
"parent": it starts a throwaway PostgreSQL server (tests/postgres.py), the three fakes (as in the main
run: same queue and run times, same spread) and CHILDREN scheduler processes
(``python -m tests.bench_postgres child CONFIG``). Each child is a real OS process running ``Scheduler``
and a ``LeaseKeeper`` under the scheduler's owner, as bot/compose.py does, against the shared ledger, with
its provider clients pointed at the parent's fakes; no Discord. The parent enqueues the jobs into the
ledger (round robin over the providers), waits until none is queued or being sent, SIGKILLs the first
child as soon as it holds a lease (a poll in flight), and waits until every job has ended.

Measured: provider requests per job (every request the fakes answered but media downloads, over N),
against the one-process main run at the same N; duplicate polls; claim transactions per second; peak RSS
per process; the takeover time; and whether every job ended exactly once with exactly one provider task.

Definitions. Each child's HTTP session sends ``X-Bench-Process: <child name>``, so the fakes know who
asked. A *duplicate poll* is a status query of a task (each task of a HiDream batch counts) by one process
less than the shortest gap the scheduler leaves on purpose after another process's query of that task:
the poll interval, less the half interval within which HiDream tasks ride along in a batch. The
*takeover time* runs from the SIGKILL until every job the killed process held a lease on at that moment
has been asked for by a survivor (the fakes' clock); a job polled is a job whose end a survivor would see.
A *claim* is one claim transaction of a scheduler (``Store.claim_submits`` or ``Store.claim_due``), counted
by the child; claims per second is the sum over the children over the wall time from the first enqueue to
the last end. Peak RSS is each child's VmHWM (ru_maxrss would carry the parent's peak across the exec);
the killed child's is read from /proc just before the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from bot.jobs.inputs import InputStore
from bot.jobs.leases import LeaseKeeper
from bot.jobs.scheduler import ProviderLimits, Scheduler, SchedulerSettings
from bot.store import Job, JobState, NewJob, Store
from bot.store.store import SubmitClaim
from providers import Operation, VideoProvider
from providers.hidream import HiDream
from providers.pixverse import PixVerse
from providers.vidu import Vidu
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu, Outcome, sample_image
from simulators.fake_providers.common import Call
from tests.bench import (
    HTTP_TIMEOUT,
    IMAGE_SIZE,
    KEYS,
    PARAMS,
    PHASE_TIMEOUT,
    POLL_INTERVAL,
    PROVIDERS,
    QUICK_SIZE,
    RESULT_MARK,
    RUN_SPREAD,
    TARGET_SIZE,
    CountingHandler,
    Progress,
    Result,
    jobs_per_provider,
    timings,
    verdict,
)
from tests.postgres import NoPostgres, PostgresServer

CHILDREN = 3
#: The lease of the bench (LEASE_SECONDS defaults to 30 s): shorter, so that the takeover is over sooner.
LEASE_SECONDS = 10.0
PROCESS_HEADER = "X-Bench-Process"
CHILD_MARK = "BENCH-CHILD "
SKIP_MARK = "BENCH-SKIPPED "
#: How often a child prints its counters (the killed child's last ones are what is known of it).
STATS_SECONDS = 1.0
#: How often the parent reads the ledger while it waits for a phase.
LEDGER_STEP = 1.0
#: The longest wait for the children to start, and for the survivors to stop.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 120.0
#: The issue's targets.
MAX_REQUEST_DRIFT = 0.10
MAX_DUPLICATES = 0
POLL_ROUTES = {"hidream": ("batch_query", "single_query"), "pixverse": ("result",), "vidu": ("creations",)}


# What the fakes saw.


@dataclass
class PollLog:
    """Status queries of one provider's tasks, by process: duplicates online, and the first query of each
    task by a survivor once a process was killed."""

    #: The shortest gap the scheduler leaves on purpose between two queries of one task.
    min_gap: float
    last: dict[str, tuple[float, str]] = field(default_factory=dict)
    duplicates: int = 0
    examples: list[tuple[str, str, str, float]] = field(default_factory=list)
    shortest_cross_gap: float = math.inf
    polls_by_process: Counter[str] = field(default_factory=Counter)
    killed: str | None = None
    killed_at: float = math.inf
    taken_over: dict[str, float] = field(default_factory=dict)

    def polled(self, task_id: str, at: float, process: str) -> None:
        self.polls_by_process[process] += 1
        previous = self.last.get(task_id)
        if previous is not None and previous[1] != process:
            gap = at - previous[0]
            self.shortest_cross_gap = min(self.shortest_cross_gap, gap)
            if gap < self.min_gap:
                self.duplicates += 1
                if len(self.examples) < 5:
                    self.examples.append((task_id, previous[1], process, gap))
        self.last[task_id] = (at, process)
        if at >= self.killed_at and process != self.killed and task_id not in self.taken_over:
            self.taken_over[task_id] = at

    def kill(self, process: str, *, at: float) -> None:
        self.killed, self.killed_at = process, at

    def takeover_seconds(self, task_ids: Iterable[str]) -> float:
        """From the kill to the last of these tasks' first query by a survivor; NaN if one was not asked for."""
        latest = self.killed_at
        for task_id in task_ids:
            if task_id not in self.taken_over:
                return math.nan
            latest = max(latest, self.taken_over[task_id])
        return 0.0 if latest == self.killed_at else latest - self.killed_at


def polled_tasks(call: Call) -> list[str]:
    """The task ids a status query asks for."""
    if call.route == "batch_query":
        ids = call.body.get("task_id_list") if isinstance(call.body, dict) else None
        return [str(task_id) for task_id in ids] if isinstance(ids, list) else []
    if call.route == "single_query":
        return [call.request.query.get("task_id", "")]
    if call.route == "result":
        return [call.request.match_info["video_id"]]
    return [call.request.match_info["task_id"]]


class LoggedPolls:
    """Mixed into a fake: each status query is told to its PollLog with the process that sent it."""

    poll_log: PollLog
    poll_routes: tuple[str, ...]

    async def _receive(self, request: web.Request, route: str) -> Call:
        call: Call = await super()._receive(request, route)  # type: ignore[misc]
        if route in self.poll_routes:
            process = request.headers.get(PROCESS_HEADER, "?")
            for task_id in polled_tasks(call):
                self.poll_log.polled(task_id, call.at, process)
        return call


class LoggedHiDream(LoggedPolls, FakeHiDream):
    pass


class LoggedPixVerse(LoggedPolls, FakePixVerse):
    pass


class LoggedVidu(LoggedPolls, FakeVidu):
    pass


def make_fakes(total: int, queue_seconds: Mapping[str, float], run_seconds: Mapping[str, float]) -> dict[str, Any]:
    """The three fakes as the main run makes them, each with its PollLog."""
    fakes: dict[str, Any] = {
        "hidream": LoggedHiDream(
            api_key=KEYS["hidream"],
            record=False,
            queue_seconds=queue_seconds["hidream"],
            run_seconds=run_seconds["hidream"],
            rate_per_minute=None,
        ),
        "pixverse": LoggedPixVerse(
            api_key=KEYS["pixverse"],
            record=False,
            queue_seconds=queue_seconds["pixverse"],
            run_seconds=run_seconds["pixverse"],
            trace_cache_size=1_000,
        ),
        "vidu": LoggedVidu(
            api_key=KEYS["vidu"],
            record=False,
            queue_seconds=queue_seconds["vidu"],
            run_seconds=run_seconds["vidu"],
            concurrency=total,
        ),
    }
    draw = random.Random(total)
    for name, count in jobs_per_provider(total).items():
        spread = [run_seconds[name] * draw.uniform(1 - RUN_SPREAD, 1 + RUN_SPREAD) for _ in range(count)]
        fakes[name].outcomes.extend(Outcome(run_seconds=seconds) for seconds in spread)
        batching = name == "hidream"
        fakes[name].poll_log = PollLog(min_gap=POLL_INTERVAL / 2 if batching else POLL_INTERVAL)
        fakes[name].poll_routes = POLL_ROUTES[name]
    return fakes


def build_providers(session: aiohttp.ClientSession, urls: Mapping[str, str]) -> dict[str, VideoProvider]:
    """As bot/providers.py builds them: default retries, the default timeout."""
    return {
        "hidream": HiDream(session, SecretStr(KEYS["hidream"]), base_url=urls["hidream"], timeout=HTTP_TIMEOUT),
        "pixverse": PixVerse(session, SecretStr(KEYS["pixverse"]), base_url=urls["pixverse"], timeout=HTTP_TIMEOUT),
        "vidu": Vidu(session, SecretStr(KEYS["vidu"]), base_url=urls["vidu"], timeout=HTTP_TIMEOUT),
    }


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM of one process, in MB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


# A child: one scheduler process.


class CountingStore(Store):
    """The ledger, counting the scheduler's claim transactions as it makes them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claims: Counter[str] = Counter()
        self.claimed: Counter[str] = Counter()

    async def claim_submits(self, provider: str, **options: Any) -> SubmitClaim:
        claim = await super().claim_submits(provider, **options)
        self.claims["submit"] += 1
        self.claimed["submit"] += len(claim.jobs)
        return claim

    async def claim_due(self, provider: str, state: JobState, **options: Any) -> list[Job]:
        jobs = await super().claim_due(provider, state, **options)
        self.claims["poll"] += 1
        self.claimed["poll"] += len(jobs)
        return jobs


def say(kind: str, **fields: Any) -> None:
    print(CHILD_MARK + json.dumps({"kind": kind, **fields}), flush=True)


async def child(config: Mapping[str, Any]) -> None:
    started = time.monotonic()
    handler = CountingHandler()
    logging.getLogger().addHandler(handler)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    lease = timedelta(seconds=config["lease_seconds"])
    store = await CountingStore.open(config["url"])
    assert isinstance(store, CountingStore)
    try:
        async with aiohttp.ClientSession(headers={PROCESS_HEADER: config["name"]}) as session:
            providers = build_providers(session, config["urls"])
            settings = SchedulerSettings(
                config["poll_interval"], limits={name: ProviderLimits() for name in PROVIDERS}, lease=lease
            )
            scheduler = Scheduler(store, providers, InputStore(Path(config["inputs"])), settings)
            leases = LeaseKeeper(store, [scheduler.owner], lease, process=scheduler.owner)

            def counters() -> dict[str, Any]:
                return {
                    "claims": dict(store.claims),
                    "claimed": dict(store.claimed),
                    "poll_requests": dict(scheduler.stats.poll_requests),
                    "tasks_polled": dict(scheduler.stats.tasks_polled),
                    "peak_rss_mb": peak_rss_mb(),
                    "cpu_seconds": time.process_time(),
                    "wall_seconds": time.monotonic() - started,
                    "log": dict(handler.counts),
                }

            await leases.start()
            try:
                await scheduler.start()
                say("ready", owner=scheduler.owner, pid=os.getpid())
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), STATS_SECONDS)
                    say("stats", **counters())
                await scheduler.stop()
            finally:
                await leases.stop()
            say("result", **counters())
    finally:
        await store.close()


# The parent: the server, the fakes, the children, the jobs.


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    said: dict[str, dict[str, Any]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(CHILD_MARK):
                message = json.loads(line.removeprefix(CHILD_MARK))
                self.said[message.pop("kind")] = message

    @property
    def owner(self) -> str:
        return str(self.said["ready"]["owner"])

    @property
    def last(self) -> dict[str, Any]:
        return self.said.get("result") or self.said.get("stats") or {}


async def start_child(name: str, config: Mapping[str, Any]) -> Child:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench_postgres",
        "child",
        json.dumps({**config, "name": name}),
        stdout=asyncio.subprocess.PIPE,
    )
    started = Child(name, process)
    started.reader = asyncio.create_task(started.read(), name=f"read {name}")
    return started


async def wait_for(check: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def unfinished_states(store: Store) -> Counter[str]:
    return Counter(job.state.value for job in await store.unfinished_jobs())


async def wait_ledger(store: Store, done: Callable[[Counter[str]], bool], within: float) -> Counter[str]:
    deadline = time.monotonic() + within
    while True:
        states = await unfinished_states(store)
        if done(states) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(LEDGER_STEP)


async def ends_per_job(store: Store, ids: Sequence[int]) -> Counter[int]:
    """How many times each job moved into a finished state, from its events."""
    ends: Counter[int] = Counter()
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        for job_id, events in zip(chunk, await asyncio.gather(*(store.events(i) for i in chunk)), strict=True):
            ends[job_id] = sum(
                1
                for event in events
                if event.to_state.finished and (event.from_state is None or not event.from_state.finished)
            )
    return ends


def task_key(provider: str, task_id: str) -> Any:
    # The PixVerse fake keys its tasks by the integer video id.
    return int(task_id) if provider == "pixverse" else task_id


def fake_requests(fake: Any) -> int:
    return sum(fake.route_count(route) for route in fake.route_names if route != "media")


async def postgres_run(total: int, *, quick: bool, lease_seconds: float = LEASE_SECONDS) -> Result:
    """The whole run; raises NoPostgres when no server can be started here."""
    progress = Progress(f"pg      N={total:,}")
    handler = CountingHandler()
    logging.getLogger().addHandler(handler)
    server = PostgresServer.start()
    try:
        url = await server.create_database("bench")
        try:
            return await run_on(url, total, quick=quick, lease_seconds=lease_seconds, progress=progress) | {
                "log": dict(handler.counts)
            }
        finally:
            with contextlib.suppress(Exception):
                await server.drop_database(url)
    finally:
        server.stop()


async def run_on(url: str, total: int, *, quick: bool, lease_seconds: float, progress: Progress) -> Result:
    queue_seconds, run_seconds = timings(quick)
    fakes = make_fakes(total, queue_seconds, run_seconds)
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as folder:
        async with fakes["hidream"], fakes["pixverse"], fakes["vidu"], aiohttp.ClientSession() as session:
            store = await Store.open(url)
            try:
                inputs = InputStore(Path(folder) / "inputs")
                data = sample_image(*IMAGE_SIZE)
                media = {}
                for name, provider in build_providers(session, {n: f.base_url for n, f in fakes.items()}).items():
                    media[name] = inputs.save(f"bench-{name}", provider.prepare_media(Operation.IMAGE_TO_VIDEO, data))
                config = {
                    "url": url,
                    "inputs": str(Path(folder) / "inputs"),
                    "urls": {name: fake.base_url for name, fake in fakes.items()},
                    "poll_interval": POLL_INTERVAL,
                    "lease_seconds": lease_seconds,
                }
                try:
                    progress(f"starting {CHILDREN} scheduler processes")
                    children = [await start_child(f"c{index}", config) for index in range(1, CHILDREN + 1)]
                    if not await wait_for(lambda: all("ready" in c.said for c in children), START_TIMEOUT):
                        raise RuntimeError("A scheduler process did not start; its error is above.")
                    return await drive(store, fakes, children, media, total, lease_seconds, progress)
                finally:
                    for running in children:
                        if running.process.returncode is None:
                            running.process.kill()
                        await running.process.wait()
                        if running.reader is not None:
                            running.reader.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await running.reader
            finally:
                await store.close()


async def drive(
    store: Store,
    fakes: Mapping[str, Any],
    children: list[Child],
    media: Mapping[str, dict[str, Any]],
    total: int,
    lease_seconds: float,
    progress: Progress,
) -> Result:
    enqueue_started = progress(f"enqueueing {total:,} jobs into the ledger")
    ids: list[int] = []
    for index in range(total):
        name = PROVIDERS[index % len(PROVIDERS)]
        new = NewJob(
            channel_id=100,
            user_id=1_000 + index % 50,
            guild_id=1,
            provider=name,
            operation=Operation.IMAGE_TO_VIDEO.value,
            params=PARAMS[name],
            media=media[name],
            key=f"pg-bench-{total}-{index}",
        )
        ids.append((await store.create_job(new)).id)
    enqueued = progress("all enqueued; waiting until none is queued or being sent") - enqueue_started
    states = await wait_ledger(
        store, lambda states: not states["queued"] and not states["submitting"], PHASE_TIMEOUT + total / 20
    )
    progress(f"submitted: {dict(states)} unfinished")

    victim, survivors = children[0], children[1:]
    # Killed while it holds leases (polls in flight), which is nearly always at this size; a few rounds at most.
    deadline = time.monotonic() + 3 * POLL_INTERVAL
    while time.monotonic() < deadline:
        if any(job.lease_owner == victim.owner for job in await store.unfinished_jobs()):
            break
        await asyncio.sleep(0.02)
    victim_rss = peak_rss_mb(victim.process.pid)
    victim_counts = dict(victim.last)
    killed_at = time.monotonic()
    for fake in fakes.values():
        fake.poll_log.kill(victim.name, at=killed_at)
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    in_flight = sum((await unfinished_states(store)).values())
    held = [job for job in await store.unfinished_jobs() if job.lease_owner == victim.owner]
    held_states = Counter(job.state.value for job in held)
    progress(f"SIGKILLed {victim.name}: it held {len(held):,} leases {dict(held_states)}; {in_flight:,} in flight")
    held_tasks = {name: [job.task_id for job in held if job.provider == name and job.task_id] for name in PROVIDERS}
    untasked = [job.id for job in held if not job.task_id]

    def taken_over() -> bool:
        return all(set(tasks) <= fakes[name].poll_log.taken_over.keys() for name, tasks in held_tasks.items())

    took = await wait_for(taken_over, lease_seconds + PHASE_TIMEOUT)
    if untasked:
        # A job held while being sent has no task to ask for: it counts as taken over once it left the lease.
        deadline = time.monotonic() + PHASE_TIMEOUT
        while time.monotonic() < deadline:
            rows = await store.get_jobs(untasked)
            if all(job.lease_owner != victim.owner for job in rows):
                break
            await asyncio.sleep(0.1)
    seconds = [fakes[name].poll_log.takeover_seconds(tasks) for name, tasks in held_tasks.items()]
    takeover = max(seconds) if took else math.nan
    progress(f"every held job asked for by a survivor {takeover:.1f} s after the kill")

    states = await wait_ledger(store, lambda states: not states, PHASE_TIMEOUT * 2)
    ended = progress(f"every job ended ({sum(states.values()):,} unfinished)") - enqueue_started
    for survivor in survivors:
        survivor.process.send_signal(signal.SIGTERM)
    await wait_for(lambda: all("result" in s.said for s in survivors), STOP_TIMEOUT)
    for survivor in survivors:
        await survivor.process.wait()

    jobs = await store.get_jobs(ids)
    ends = await ends_per_job(store, ids)
    task_ids = Counter((job.provider, job.task_id) for job in jobs if job.task_id)
    fake_tasks = {name: len(fake.tasks) for name, fake in fakes.items()}
    unknown_tasks = sum(
        1 for job in jobs if job.task_id and task_key(job.provider, job.task_id) not in fakes[job.provider].tasks
    )
    once = (
        all(job.state.finished for job in jobs)
        and all(ends[job.id] == 1 for job in jobs)
        and len(task_ids) == total
        and all(count == 1 for count in task_ids.values())
        and sum(fake_tasks.values()) == total
        and unknown_tasks == 0
    )
    per_process = {c.name: c.last for c in children}
    per_process[victim.name] = {**victim_counts, **victim.last, "peak_rss_mb": victim_rss, "killed": True}
    return {
        "n": total,
        "processes": len(children),
        "lease_seconds": lease_seconds,
        "poll_interval": POLL_INTERVAL,
        "enqueue_seconds": enqueued,
        "wall_seconds": ended,
        "in_flight_at_kill": in_flight,
        "held": len(held),
        "held_states": dict(held_states),
        "takeover_seconds": takeover,
        "takeover_by_provider": dict(zip(PROVIDERS, seconds, strict=True)),
        "requests": {
            name: {
                "jobs": jobs_per_provider(total)[name],
                "all": fake_requests(fake),
                "poll": sum(fake.route_count(route) for route in POLL_ROUTES[name]),
            }
            for name, fake in fakes.items()
        },
        "duplicates": {name: fake.poll_log.duplicates for name, fake in fakes.items()},
        "duplicate_examples": {name: fake.poll_log.examples for name, fake in fakes.items()},
        "shortest_cross_gap": {name: fake.poll_log.shortest_cross_gap for name, fake in fakes.items()},
        "min_gap": {name: fake.poll_log.min_gap for name, fake in fakes.items()},
        "polls_by_process": {name: dict(fake.poll_log.polls_by_process) for name, fake in fakes.items()},
        "states": dict(Counter(job.state.value for job in jobs)),
        "ends": dict(Counter(ends[job.id] for job in jobs)),
        "distinct_tasks": len(task_ids),
        "fake_tasks": fake_tasks,
        "unknown_tasks": unknown_tasks,
        "exactly_once": once,
        "children": per_process,
        "parent_peak_rss_mb": peak_rss_mb(),
    }


# The table, in the process that runs `python -m tests.bench`.


def measure_postgres(total: int, quick: bool) -> Result:
    """The run in a fresh subprocess; ``{"skipped": reason}`` when no PostgreSQL server can run here."""
    command = [sys.executable, "-m", "tests.bench_postgres", "run", str(total), *(["--quick"] if quick else [])]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(SKIP_MARK):
            return {"skipped": line.removeprefix(SKIP_MARK)}
        if line.startswith(RESULT_MARK):
            result: Result = json.loads(line.removeprefix(RESULT_MARK))
            return result
    raise RuntimeError("The PostgreSQL run printed no result.")


def requests_per_job(run: Result, name: str | None = None) -> float:
    names = [name] if name else list(PROVIDERS)
    jobs = sum(run["requests"][each]["jobs"] for each in names)
    return sum(run["requests"][each]["all"] for each in names) / max(1, jobs)


def postgres_section(total: int, quick: bool, main: Result | None) -> str:
    """The PostgreSQL run's table against its targets; ``main`` is the one-process main run at the same N."""
    run = measure_postgres(total, quick)
    if "skipped" in run:
        return f"PostgreSQL, {CHILDREN} processes: skipped ({run['skipped']})"
    return postgres_table(run, main)


def postgres_table(run: Result, main: Result | None) -> str:
    def versus(name: str | None) -> str:
        ours = requests_per_job(run, name)
        if main is None:
            return f"{ours:.2f}"
        theirs = requests_per_job(main, name)
        return f"{ours:.2f} vs {theirs:.2f} in one process ({ours / theirs - 1:+.1%})"

    drift = abs(requests_per_job(run) / requests_per_job(main) - 1) if main else None
    duplicates = sum(run["duplicates"].values())
    gaps = "/".join(f"{run['shortest_cross_gap'][name]:.1f}" for name in PROVIDERS)
    limits = "/".join(f"{run['min_gap'][name]:g}" for name in PROVIDERS)
    claims = Counter[str]()
    claimed = Counter[str]()
    for counts in run["children"].values():
        claims.update(counts.get("claims", {}))
        claimed.update(counts.get("claimed", {}))
    wall = run["wall_seconds"]
    rss = ", ".join(
        f"{name} {counts.get('peak_rss_mb', math.nan):.0f} MB" + (" (killed)" if counts.get("killed") else "")
        for name, counts in run["children"].items()
    )
    takeover_limit = run["lease_seconds"] + run["poll_interval"]
    takeover = run["takeover_seconds"]
    ends = ", ".join(f"{count:,} ended {times}x" for times, count in sorted(run["ends"].items()))
    states = ", ".join(f"{count:,} {state}" for state, count in run["states"].items())
    rows = [
        (
            "every job ended once, one task each",
            f"{states}; {ends}; {run['distinct_tasks']:,} distinct tasks, "
            f"{sum(run['fake_tasks'].values()):,} at the fakes, {run['unknown_tasks']} unknown",
            "exactly once",
            verdict(run["exactly_once"]),
        ),
        (
            "jobs in flight at the kill",
            f"{run['in_flight_at_kill']:,} (enqueued at {run['n'] / run['enqueue_seconds']:,.0f} jobs/s)",
            "",
            "",
        ),
        (
            "provider requests per job",
            versus(None),
            f"within {MAX_REQUEST_DRIFT:.0%}" if main else "(no main run)",
            verdict(drift <= MAX_REQUEST_DRIFT if drift is not None else None),
        ),
        *((f"  {name}", versus(name), "", "") for name in PROVIDERS),
        (
            "duplicate polls",
            f"{duplicates} (shortest gap between two processes' queries of one task hd/pv/vd: {gaps} s; "
            f"a duplicate is under {limits} s)",
            f"{MAX_DUPLICATES}",
            verdict(duplicates <= MAX_DUPLICATES),
        ),
        (
            "claims per second",
            f"{claims.total() / wall:,.1f}/s ({claims.total():,} claim transactions in {wall:.0f} s: "
            f"{claims['submit']:,} submit, {claims['poll']:,} poll; {claimed.total():,} jobs claimed)",
            "",
            "",
        ),
        ("peak RSS per process", f"{rss}; the parent with the fakes {run['parent_peak_rss_mb']:.0f} MB", "", ""),
        (
            "takeover after a SIGKILL",
            f"{takeover:.1f} s ({run['held']:,} jobs held by the killed process, lease {run['lease_seconds']:g} s)",
            f"≤ {takeover_limit:g} s (lease + poll interval)",
            verdict(takeover <= takeover_limit if run["held"] else None),
        ),
        ("wall time (first enqueue to last end)", f"{wall:.0f} s", "", ""),
    ]
    header = (f"PostgreSQL, {run['processes']} processes, N = {run['n']:,}", "measured", "target", "")
    lines = [header, *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    logged = {name: counts["log"] for name, counts in run["children"].items() if counts.get("log")}
    if run.get("log"):
        logged["parent"] = run["log"]
    if logged:
        text.append(f"Log records at WARNING or above: {logged}")
    examples = {name: found for name, found in run["duplicate_examples"].items() if found}
    if examples:
        text.append(f"Duplicate polls (task, first process, second process, gap s): {examples}")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_postgres", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the PostgreSQL run of N jobs; prints JSON (or why it was skipped)")
    run.add_argument("n", type=int)
    run.add_argument("--quick", action="store_true", help="short run times, as python -m tests.bench --quick")
    one = commands.add_parser("child", help="one scheduler process (started by run)")
    one.add_argument("config", help="JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, handlers=[logging.NullHandler()])
    if args.command == "child":
        asyncio.run(child(json.loads(args.config)))
        return 0
    try:
        result = asyncio.run(postgres_run(args.n, quick=args.quick))
    except NoPostgres as exc:
        print(SKIP_MARK + str(exc), flush=True)
        return 0
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


__all__ = ["QUICK_SIZE", "TARGET_SIZE", "PollLog", "postgres_section", "postgres_table"]

if __name__ == "__main__":
    sys.exit(main())

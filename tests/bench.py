"""Benchmark of the scheduler: N in-flight jobs against the loopback fake providers, in one process.

``python -m tests.bench`` (``make bench``) measures N = 1,000 and N = 10,000 and prints one table;
``--quick`` measures N = 300 with short run times as a smoke check. Each measurement runs in a fresh
subprocess, so that its peak RSS is its own.

Every subprocess starts the three fakes (request recording off), one aiohttp session, the three
clients, a ledger in a temporary file, an input folder and a scheduler with no running cap and no
per-minute cap, polling every 5 s (the bot's default). The jobs, split evenly across HiDream,
PixVerse and Vidu, go through ``scheduler.enqueue``, so every submit reaches a fake.

The main run takes every job to its end with realistic run times and measures provider requests per
job (submits, uploads and polls, as the fakes count them); HiDream batch requests against one request
per task, both per scheduler round and per pass over the HiDream tasks in flight; the delay from a task
finishing at its fake (the fake task's ``end_at``) to the scheduler publishing the job as succeeded;
peak RSS; and CPU seconds per 1,000 jobs. The fakes share the process, so RSS and CPU include theirs.

The restart run gives the tasks a run time far longer than the run, waits until every job runs at
its provider, stops the scheduler and starts a new one on the same ledger, and measures the time to the
new scheduler's first poll (and until every unfinished job's status has been asked for once).

The PostgreSQL run (tests/bench_postgres.py; ``--postgres N`` runs it alone, with the main run of N it is
compared with; it follows the scheduler table otherwise, at N = 10,000 or, with ``--quick``, 300) spreads
N jobs over three scheduler processes sharing one throwaway PostgreSQL ledger and SIGKILLs one of them;
without PostgreSQL server programs it prints one line saying it was skipped and why.

The media section (``--media`` runs it alone; it follows the scheduler runs otherwise) prepares input
images as the bot does, each case in a fresh subprocess, and measures the time and the growth of that
process's peak RSS over its RSS just before (VmHWM, reset through /proc/self/clear_refs; ru_maxrss
would also carry the parent's peak across exec): a complete 7000 x 7000
PNG, refused from its header; a 6000 x 4000 JPEG photo, upright and EXIF-rotated, for each provider;
and ten 4000 x 3000 photos at once through the bot's preparation pool, with the event loop's lag
measured by a 10 ms ticker, then the same burst through ``asyncio.to_thread`` (the unbounded way).

The ledger section (``--ledger`` runs it alone, with its own restart run at N = 10,000; it follows the
scheduler runs otherwise, and takes their restart run) measures the issue 10 targets. The idle run
enqueues 10,000 jobs through ``scheduler.enqueue`` with a running cap of one per provider, whose one job
runs far longer than the run at its fake, waits until every queued job shows its position, and then
counts the process's CPU time over IDLE_SECONDS of wall time: the share of one core an idle bot takes
while jobs wait for room (the fakes share the process, idle but for a poll of the three running jobs).
The throughput run opens a ledger alone, creates jobs, then walks each from queued through submitting
and running to succeeded with ``Store.transition``, one asyncio task per job, and counts state changes
per second.

The metrics section (``--metrics`` runs it alone; it follows the ledger section otherwise) measures the
issue 12 targets. The scrape run fills a SQLite ledger with 100,000 jobs (one executemany; 2 % of them
unfinished, as in a busy bot with a long history), serves ``/metrics`` from the bot's health server and
times SCRAPES scrapes over HTTP after one warm-up. The overhead compares the CPU per 1,000 jobs of the
main run with and without metrics (the provider clients' observer, the scheduler's observer and a scrape
every SCRAPE_INTERVAL seconds, as Prometheus would); it is measured at N = 1,000, not 10,000, so that it
does not add two more 10,000-job runs; Discord's REST requests are not part of the bench.

The callbacks section (tests/bench_callbacks.py; ``python -m tests.bench_callbacks`` runs it alone; it follows
the /status section otherwise) runs the main run again at N = 10,000 (``--main N --callbacks``) with every
provider calling back to a listener on loopback and jobs polled every CALLBACK_POLL_INTERVAL seconds, and
measures the listener alone under 500 signed Vidu callbacks a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import os
import platform
import random
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from PIL import ExifTags, Image
from pydantic import SecretStr

from bot.callbacks import CallbackListener, callback_url
from bot.health import HealthServer
from bot.jobs.inputs import InputStore
from bot.jobs.preparation import PreparationPool
from bot.jobs.scheduler import ProviderLimits, Scheduler, SchedulerSettings
from bot.metrics import Metrics
from bot.store import Job, JobState, NewJob, Store
from providers import Operation, VideoProvider
from providers.hidream import HiDream
from providers.hidream.capabilities import IMAGE_LIMITS as HIDREAM_IMAGE_LIMITS
from providers.media import ImageLimits, MediaRejected, prepare_image
from providers.pixverse import PixVerse
from providers.pixverse.capabilities import IMAGE_LIMITS as PIXVERSE_IMAGE_LIMITS
from providers.vidu import Vidu
from providers.vidu.capabilities import IMAGE_LIMITS as VIDU_IMAGE_LIMITS
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu, Outcome, sample_image
from tests.bench_status import status_section

PROVIDERS = ("hidream", "pixverse", "vidu")
SIZES = (1_000, 10_000)
QUICK_SIZE = 300
#: The bot's default POLL_INTERVAL_SECONDS and HTTP_TIMEOUT_SECONDS.
POLL_INTERVAL = 5.0
HTTP_TIMEOUT = 30.0
#: Seconds a task waits at its fake before it runs, and then runs.
QUEUE_SECONDS = {"hidream": 3.0, "pixverse": 3.0, "vidu": 5.0}
RUN_SECONDS = {"hidream": 130.0, "pixverse": 130.0, "vidu": 150.0}
QUICK_QUEUE_SECONDS = {"hidream": 0.5, "pixverse": 0.5, "vidu": 0.5}
QUICK_RUN_SECONDS = {"hidream": 3.0, "pixverse": 3.0, "vidu": 4.0}
#: Each task's run time is drawn from ±RUN_SPREAD around its provider's, as real run times vary; equal
#: run times would put every end at the same point between two polls.
RUN_SPREAD = 0.2
#: In the restart run no task may end before the restart.
RESTART_RUN_SECONDS = 3_600.0
#: How often the watcher reads the scheduler's counters.
SAMPLE_SECONDS = 0.05
#: The longest wait for one phase (every job running, every job ended) before the run reports what it has.
PHASE_TIMEOUT = 300.0
IMAGE_SIZE = (320, 180)
PARAMS: dict[str, dict[str, Any]] = {"hidream": {}, "pixverse": {"prompt": "a wave"}, "vidu": {"prompt": "a wave"}}
KEYS = {name: f"bench-{name}-key-0123456789" for name in PROVIDERS}
SUBMIT_ROUTES = {
    "hidream": ("submit_img2video", "submit_video_edit"),
    "pixverse": ("upload", "generate"),
    "vidu": ("create",),
}
POLL_ROUTES = {"hidream": ("batch_query", "single_query"), "pixverse": ("result",), "vidu": ("creations",)}
#: With callbacks on (tests/bench_callbacks.py): jobs are polled only this often, the production default of
#: CALLBACK_POLL_SECONDS; the secret PixVerse's console webhook is signed with.
CALLBACK_POLL_INTERVAL = SchedulerSettings().callback_poll_interval
WEBHOOK_SECRET = "bench-pixverse-webhook-secret"

#: The issue's targets.
MAX_BATCH_RATIO = 1.1
MAX_P95_OVER_INTERVAL = 1.0
MAX_RSS_MB = 150.0
MAX_RESTART_SECONDS = 3.0
TARGET_SIZE = 10_000

#: The media section's inputs and targets (issue 9, point 7).
IMAGE_LIMITS: dict[str, ImageLimits] = {
    "hidream": HIDREAM_IMAGE_LIMITS,
    "pixverse": PIXVERSE_IMAGE_LIMITS,
    "vidu": VIDU_IMAGE_LIMITS,
}
HUGE_PNG = (7000, 7000)
PHOTO = (6000, 4000)
BURST_PHOTO = (4000, 3000)
BURST_SIZE = 10
#: The burst goes to HiDream, whose 2,048-pixel limit makes every 4000 x 3000 photo be resampled.
BURST_PROVIDER = "hidream"
TICK_SECONDS = 0.01
MAX_REFUSAL_MS = 100.0
#: "No measurable growth": less than one MB of peak RSS.
MAX_REFUSAL_GROWTH_MB = 1.0
MAX_PREPARE_GROWTH_MB = 150.0
MAX_LAG_MS = 100.0

#: The ledger section's sizes and targets (issue 10).
IDLE_SIZE = 10_000
IDLE_SECONDS = 20.0
QUICK_IDLE_SECONDS = 5.0
#: How often the idle run asks the ledger whether every queued job shows its position.
SETTLE_STEP = 0.5
MAX_IDLE_CPU_SHARE = 0.02
THROUGHPUT_JOBS = 2_000
MIN_TRANSITIONS_PER_SECOND = 1_000.0
THROUGHPUT_WALK = (JobState.SUBMITTING, JobState.RUNNING, JobState.SUCCEEDED)

#: The metrics section's sizes and targets (issue 12).
SCRAPE_LEDGER_SIZE = 100_000
SCRAPE_UNFINISHED_SHARE = 0.02
SCRAPES = 20
MAX_SCRAPE_MS = 200.0
OVERHEAD_SIZE = 1_000
#: Prometheus' default scrape interval; the quick run scrapes every second to exercise it at all.
SCRAPE_INTERVAL = 15.0
QUICK_SCRAPE_INTERVAL = 1.0
MAX_METRICS_CPU_OVERHEAD = 0.05

RESULT_MARK = "BENCH-RESULT "
Result = dict[str, Any]


# Measuring, inside one subprocess.


class CountingHandler(logging.Handler):
    """Counts the bot's warnings and errors; prints the first few so that a flood stays readable."""

    def __init__(self, shown: int = 5) -> None:
        super().__init__(logging.WARNING)
        self.shown = shown
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        if self.counts.total() <= self.shown:
            print(f"  [{record.levelname.lower()}] {record.name}: {record.getMessage()}", file=sys.stderr)


class Observer:
    """The scheduler's subscriber: which jobs run, which ended, and how late each success was seen."""

    def __init__(self, fakes: Mapping[str, Any], total: int) -> None:
        self.fakes = fakes
        self.total = total
        self.running: set[int] = set()
        self.in_flight: Counter[str] = Counter()
        self.peak_in_flight = 0
        self.ended: dict[int, JobState] = {}
        self.delays: dict[str, list[float]] = {name: [] for name in PROVIDERS}
        self.all_running = asyncio.Event()
        self.all_ended = asyncio.Event()

    async def __call__(self, job: Job) -> None:
        if job.state is JobState.RUNNING:
            if job.id not in self.running and job.id not in self.ended:
                self.running.add(job.id)
                self.in_flight[job.provider] += 1
                self.peak_in_flight = max(self.peak_in_flight, len(self.running))
                if len(self.running) + len(self.ended) >= self.total:
                    self.all_running.set()
            return
        if not job.state.finished or job.id in self.ended:
            return
        seen = time.monotonic()
        self.ended[job.id] = job.state
        if job.id in self.running:
            self.running.discard(job.id)
            self.in_flight[job.provider] -= 1
        if job.state is JobState.SUCCEEDED and job.task_id is not None:
            # The PixVerse fake keys its tasks by the integer video id.
            task_id: Any = int(job.task_id) if job.provider == "pixverse" else job.task_id
            self.delays[job.provider].append(seen - self.fakes[job.provider].tasks[task_id].end_at)
        if len(self.ended) >= self.total:
            self.all_ended.set()


@dataclass
class BatchWatcher:
    """Reads HiDream's poll counters every SAMPLE_SECONDS and weighs the requests against full batches.

    Per scheduler round: the tasks counted between two samples that saw a new round belong to that
    round; rounds begun within one sample are merged, which can only make the bound stricter.
    Per pass: with n HiDream tasks in flight, asking for each once takes ceil(n / batch) requests at
    best, so every task polled is worth ceil(n / batch) / n requests.
    """

    scheduler: Scheduler
    observer: Observer
    batch: int
    last: tuple[int, int, int] = (0, 0, 0)
    last_in_flight: int = 0
    segment_tasks: int = 0
    round_bound: int = 0
    pass_bound: float = 0.0

    def sample(self) -> None:
        stats = self.scheduler.stats
        now = (stats.poll_rounds["hidream"], stats.poll_requests["hidream"], stats.tasks_polled["hidream"])
        new_rounds, new_tasks = now[0] - self.last[0], now[2] - self.last[2]
        if new_rounds > 0:
            self.close_segment()
        self.segment_tasks += new_tasks
        # Tasks polled in this window were in flight at its start or joined during it; tasks that ended
        # during it no longer count at its end. The larger count is the stricter bound.
        in_flight = self.observer.in_flight["hidream"]
        most = max(1, in_flight, self.last_in_flight)
        self.pass_bound += new_tasks * math.ceil(most / self.batch) / most
        self.last, self.last_in_flight = now, in_flight

    def close_segment(self) -> None:
        self.round_bound += math.ceil(self.segment_tasks / self.batch)
        self.segment_tasks = 0

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    def result(self) -> Result:
        self.sample()
        self.close_segment()
        rounds, requests, tasks = self.last
        return {
            "rounds": rounds,
            "requests": requests,
            "tasks": tasks,
            "round_bound": self.round_bound,
            "pass_bound": self.pass_bound,
        }


@dataclass
class World:
    """The fakes, the clients, the ledger and the inputs of one run."""

    fakes: dict[str, Any]
    providers: dict[str, VideoProvider]
    store: Store
    inputs: InputStore
    media: dict[str, dict[str, Any]]
    metrics: Metrics | None = None
    #: Where the providers call back (None: they do not, and every job is polled).
    public_url: str | None = None

    def scheduler(self, observer: Observer, *, max_running: int | None = None) -> Scheduler:
        limits = {name: ProviderLimits(max_running=max_running) for name in PROVIDERS}
        calling_back = frozenset(PROVIDERS) if self.public_url else frozenset()
        scheduler = Scheduler(
            self.store,
            self.providers,
            self.inputs,
            SchedulerSettings(
                POLL_INTERVAL,
                limits=limits,
                callback_providers=calling_back,
                callback_poll_interval=CALLBACK_POLL_INTERVAL,
            ),
            observer=self.metrics,
        )
        scheduler.subscribe(observer)
        return scheduler

    async def enqueue(self, scheduler: Scheduler, total: int) -> None:
        """Enqueue ``total`` jobs one after another, as commands would, round robin over the providers."""
        for index in range(total):
            name = PROVIDERS[index % len(PROVIDERS)]
            new = NewJob(
                channel_id=100,
                user_id=1_000 + index % 50,
                guild_id=1,
                provider=name,
                operation=Operation.IMAGE_TO_VIDEO.value,
                params=PARAMS[name],
                media=self.media[name],
                key=f"bench-{total}-{index}",
            )
            await scheduler.enqueue(new)


@contextlib.asynccontextmanager
async def world(
    total: int,
    queue_seconds: Mapping[str, float],
    run_seconds: Mapping[str, float],
    *,
    metrics: Metrics | None = None,
    public_url: str | None = None,
) -> AsyncIterator[World]:
    """With ``public_url``, the clients ask to be called back under it (as bot/providers.py builds them with
    PUBLIC_URL and PIXVERSE_WEBHOOK_SECRET) and the fakes do so; PixVerse's console webhook points there too."""
    fakes: dict[str, Any] = {
        "hidream": FakeHiDream(
            api_key=KEYS["hidream"],
            record=False,
            queue_seconds=queue_seconds["hidream"],
            run_seconds=run_seconds["hidream"],
            rate_per_minute=None,
        ),
        # Every result query carries a fresh trace id, so the fake's answer cache would only hold memory.
        "pixverse": FakePixVerse(
            api_key=KEYS["pixverse"],
            record=False,
            queue_seconds=queue_seconds["pixverse"],
            run_seconds=run_seconds["pixverse"],
            trace_cache_size=1_000,
        ),
        "vidu": FakeVidu(
            api_key=KEYS["vidu"],
            record=False,
            queue_seconds=queue_seconds["vidu"],
            run_seconds=run_seconds["vidu"],
            concurrency=total,
        ),
    }
    if public_url is not None:
        fakes["pixverse"].webhook_url = callback_url(public_url, "pixverse")
        fakes["pixverse"].webhook_secret = WEBHOOK_SECRET
        # Three providers call back from three places, each limited by the listener on its own.
        for number, name in enumerate(PROVIDERS, start=2):
            fakes[name].callback_source = f"127.0.0.{number}"
    draw = random.Random(total)
    for name, count in jobs_per_provider(total).items():
        spread = [run_seconds[name] * draw.uniform(1 - RUN_SPREAD, 1 + RUN_SPREAD) for _ in range(count)]
        fakes[name].outcomes.extend(Outcome(run_seconds=seconds) for seconds in spread)
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        async with fakes["hidream"], fakes["pixverse"], fakes["vidu"], aiohttp.ClientSession() as session:
            # As bot/providers.py builds them: default retries, the default timeout.
            urls = {name: fake.base_url for name, fake in fakes.items()}
            observers = {name: metrics.provider_observer(name) if metrics else None for name in PROVIDERS}
            calls_back = {name: callback_url(public_url, name) if public_url else None for name in PROVIDERS}
            providers: dict[str, VideoProvider] = {
                "hidream": HiDream(
                    session,
                    SecretStr(KEYS["hidream"]),
                    base_url=urls["hidream"],
                    timeout=HTTP_TIMEOUT,
                    observer=observers["hidream"],
                    callback_url=calls_back["hidream"],
                ),
                "pixverse": PixVerse(
                    session,
                    SecretStr(KEYS["pixverse"]),
                    base_url=urls["pixverse"],
                    timeout=HTTP_TIMEOUT,
                    observer=observers["pixverse"],
                    webhook_secret=SecretStr(WEBHOOK_SECRET) if public_url else None,
                ),
                "vidu": Vidu(
                    session,
                    SecretStr(KEYS["vidu"]),
                    base_url=urls["vidu"],
                    timeout=HTTP_TIMEOUT,
                    observer=observers["vidu"],
                    callback_url=calls_back["vidu"],
                ),
            }
            store = await Store.open(Path(folder) / "bot.db")
            try:
                inputs = InputStore(Path(folder) / "inputs")
                # One small input saved once per provider; every job of that provider points at it.
                data = sample_image(*IMAGE_SIZE)
                media = {}
                for name, provider in providers.items():
                    assert provider.validate(Operation.IMAGE_TO_VIDEO, PARAMS[name]) == []
                    prepared = provider.prepare_media(Operation.IMAGE_TO_VIDEO, data)
                    media[name] = inputs.save(f"bench-{name}", prepared)
                if metrics is not None:
                    metrics.track(providers)
                yield World(fakes, providers, store, inputs, media, metrics, public_url)
            finally:
                await store.close()


def jobs_per_provider(total: int) -> Counter[str]:
    """How many of ``total`` jobs go to each provider (World.enqueue goes round robin)."""
    return Counter(PROVIDERS[index % len(PROVIDERS)] for index in range(total))


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def wait_event(event: asyncio.Event, within: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), within)


async def wait_until(check: Callable[[], bool], within: float, step: float = 0.001) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


class Progress:
    """Progress lines on stderr, so that stdout carries only the result."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()

    def __call__(self, text: str) -> float:
        elapsed = time.monotonic() - self.started
        print(f"  {self.label} {elapsed:7.1f} s  {text}", file=sys.stderr, flush=True)
        return elapsed


def timings(quick: bool) -> tuple[dict[str, float], dict[str, float]]:
    return (QUICK_QUEUE_SECONDS, QUICK_RUN_SECONDS) if quick else (QUEUE_SECONDS, RUN_SECONDS)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def scrape_forever(metrics: Metrics, store: Store, interval: float, scrapes: list[float]) -> None:
    """What Prometheus costs the bot: a render of /metrics, ledger gauges included, every ``interval`` s."""
    while True:
        await asyncio.sleep(interval)
        started = time.perf_counter()
        await metrics.render(store)
        scrapes.append(time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def main_run(total: int, *, quick: bool, with_metrics: bool = False, callbacks: bool = False) -> Result:
    """Every job from enqueue to its end; ``with_metrics`` adds what collecting metrics costs; with
    ``callbacks`` the providers call back to a listener on loopback (PUBLIC_URL) and jobs are polled only
    every CALLBACK_POLL_INTERVAL seconds."""
    cpu_started = time.process_time()
    label = " +metrics" if with_metrics else " +callbacks" if callbacks else ""
    progress = Progress(f"main    N={total:,}{label}")
    handler = CountingHandler()
    logging.getLogger().addHandler(handler)
    queue_seconds, run_seconds = timings(quick)
    metrics = Metrics() if with_metrics else None
    scrapes: list[float] = []
    port = free_port() if callbacks else None
    public_url = f"http://127.0.0.1:{port}" if port else None
    listened: dict[str, Counter[str]] = {name: Counter() for name in PROVIDERS}

    def count_callback(provider: str, outcome: str) -> None:
        listened[provider][outcome] += 1

    async with world(total, queue_seconds, run_seconds, metrics=metrics, public_url=public_url) as here:
        observer = Observer(here.fakes, total)
        scheduler = here.scheduler(observer)
        watcher = BatchWatcher(scheduler, observer, here.providers["hidream"].poll_batch_size)
        listener = None
        if port is not None:
            listener = CallbackListener(
                here.providers, scheduler.task_reported, host="127.0.0.1", port=port, on_outcome=count_callback
            )
            await listener.start()
        await scheduler.start()
        watching = asyncio.create_task(watcher.run(), name="batch watcher")
        if metrics is not None:
            interval = QUICK_SCRAPE_INTERVAL if quick else SCRAPE_INTERVAL
            scraping = asyncio.create_task(scrape_forever(metrics, here.store, interval, scrapes), name="scrapes")
            watching.add_done_callback(lambda _: scraping.cancel())
        try:
            enqueue_started = progress(f"enqueueing {total:,} jobs")
            await here.enqueue(scheduler, total)
            enqueued = progress(f"all enqueued; {len(observer.ended):,} ended so far") - enqueue_started
            await wait_event(observer.all_ended, PHASE_TIMEOUT)
            progress(f"{len(observer.ended):,} ended; at most {observer.peak_in_flight:,} were in flight at once")
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            if listener is not None:
                await listener.stop()
            await scheduler.stop()
        jobs = jobs_per_provider(total)
        requests = {
            name: {
                "jobs": jobs[name],
                "submit": sum(fake.route_count(route) for route in SUBMIT_ROUTES[name]),
                "poll": sum(fake.route_count(route) for route in POLL_ROUTES[name]),
                "all": sum(fake.route_count(route) for route in fake.route_names if route != "media"),
                "routes": {route: fake.route_count(route) for route in sorted(fake.route_names)},
            }
            for name, fake in here.fakes.items()
        }
        # Tasks that ran past the first timed poll (CALLBACK_POLL_INTERVAL after they were created), which is
        # asked for while they still run: the polls a callback cannot save.
        past_first_poll = {
            name: sum(1 for task in fake.tasks.values() if task.end_at - task.created_at > CALLBACK_POLL_INTERVAL)
            for name, fake in here.fakes.items()
        }
        sent = {name: dict(fake.callback_count) for name, fake in here.fakes.items()}
    cpu = time.process_time() - cpu_started
    return {
        "n": total,
        "requests": requests,
        "hidream": watcher.result(),
        "delay_p50": percentile([delay for delays in observer.delays.values() for delay in delays], 0.50),
        "delay_p95": percentile([delay for delays in observer.delays.values() for delay in delays], 0.95),
        "delay_p95_by_provider": {name: percentile(delays, 0.95) for name, delays in observer.delays.items()},
        "states": dict(Counter(state.value for state in observer.ended.values())),
        "peak_in_flight": observer.peak_in_flight,
        "enqueue_seconds": enqueued,
        "peak_rss_mb": peak_rss_mb(),
        "cpu_per_1000": cpu / total * 1000,
        "wall_seconds": time.monotonic() - progress.started,
        "log": dict(handler.counts),
        "metrics": with_metrics,
        "scrapes": len(scrapes),
        "callbacks": callbacks,
        "callbacks_sent": sent,
        "callbacks_taken": {name: dict(outcomes) for name, outcomes in listened.items()},
        "past_first_poll": past_first_poll,
    }


async def restart_run(total: int, *, quick: bool) -> Result:
    """Every job running at its provider, then a restart of the scheduler on the same ledger."""
    progress = Progress(f"restart N={total:,}")
    handler = CountingHandler()
    logging.getLogger().addHandler(handler)
    queue_seconds, _ = timings(quick)
    async with world(total, queue_seconds, dict.fromkeys(PROVIDERS, RESTART_RUN_SECONDS)) as here:
        observer = Observer(here.fakes, total)
        scheduler = here.scheduler(observer)
        await scheduler.start()
        try:
            progress(f"enqueueing {total:,} jobs")
            await here.enqueue(scheduler, total)
            await wait_event(observer.all_running, PHASE_TIMEOUT)
            unfinished = total - len(observer.ended)
            progress(f"{len(observer.running):,} running, {unfinished:,} unfinished; restarting the scheduler")
            await scheduler.stop()
            scheduler = here.scheduler(observer)
            started = time.monotonic()
            await scheduler.start()
            await wait_until(lambda: scheduler.first_poll_at is not None, PHASE_TIMEOUT)
            first_poll = (scheduler.first_poll_at or math.nan) - started
            in_flight = dict(observer.in_flight)
            polled = await wait_until(
                lambda: all(scheduler.stats.tasks_polled[name] >= count for name, count in in_flight.items()),
                PHASE_TIMEOUT,
                step=0.01,
            )
            every_poll = time.monotonic() - started if polled else math.nan
            progress(f"first poll {first_poll:.3f} s after the restart; every job asked for after {every_poll:.1f} s")
        finally:
            await scheduler.stop()
    return {
        "n": total,
        "unfinished": unfinished,
        "first_poll_seconds": first_poll,
        "every_poll_seconds": every_poll,
        "peak_rss_mb": peak_rss_mb(),
        "wall_seconds": time.monotonic() - progress.started,
        "log": dict(handler.counts),
    }


def fake_requests(fakes: Mapping[str, Any]) -> int:
    """Every request the fakes answered so far, media downloads left out."""
    return sum(fake.route_count(route) for fake in fakes.values() for route in fake.route_names if route != "media")


async def positions_settled(store: Store) -> bool:
    """Whether every queued job of every provider shows the position it will be sent in."""
    for name in PROVIDERS:
        order = await store.queue_order(name)
        if any(shown != position for position, (_, shown) in enumerate(order, start=1)):
            return False
    return True


async def idle_run(total: int, *, quick: bool) -> Result:
    """``total`` jobs waiting for room at providers that are full, and the CPU the process takes meanwhile."""
    progress = Progress(f"idle    N={total:,}")
    handler = CountingHandler()
    logging.getLogger().addHandler(handler)
    async with world(total, QUEUE_SECONDS, dict.fromkeys(PROVIDERS, RESTART_RUN_SECONDS)) as here:
        observer = Observer(here.fakes, total)
        scheduler = here.scheduler(observer, max_running=1)
        await scheduler.start()
        try:
            enqueue_started = progress(f"enqueueing {total:,} jobs, at most 1 running per provider")
            await here.enqueue(scheduler, total)
            enqueued = progress("all enqueued; waiting for one job running per provider and every position")
            enqueue_seconds = enqueued - enqueue_started
            running = await wait_until(lambda: len(observer.running) >= len(PROVIDERS), PHASE_TIMEOUT, step=0.01)
            settled = False
            deadline = time.monotonic() + PHASE_TIMEOUT
            while time.monotonic() < deadline:
                if await positions_settled(here.store):
                    settled = True
                    break
                await asyncio.sleep(SETTLE_STEP)
            settle_seconds = progress(f"settled: {settled}, running: {len(observer.running)}") - enqueued
            requests_before = fake_requests(here.fakes)
            polls_before = sum(scheduler.stats.poll_requests.values())
            cpu_before, wall_before = time.process_time(), time.monotonic()
            await asyncio.sleep(QUICK_IDLE_SECONDS if quick else IDLE_SECONDS)
            cpu, wall = time.process_time() - cpu_before, time.monotonic() - wall_before
            requests = fake_requests(here.fakes) - requests_before
            polls = sum(scheduler.stats.poll_requests.values()) - polls_before
            queued = 0
            for name in PROVIDERS:
                queued += len(await here.store.queue_order(name))
            progress(f"{cpu:.2f} CPU s over {wall:.1f} s: {cpu / wall:.2%} of a core; {queued:,} still queued")
        finally:
            await scheduler.stop()
    return {
        "n": total,
        "running": len(observer.running),
        "queued": queued,
        "settled": settled and running,
        "enqueue_seconds": enqueue_seconds,
        "settle_seconds": settle_seconds,
        "cpu_seconds": cpu,
        "idle_seconds": wall,
        "cpu_share": cpu / wall,
        "fake_requests": requests,
        "poll_requests": polls,
        "peak_rss_mb": peak_rss_mb(),
        "wall_seconds": time.monotonic() - progress.started,
        "log": dict(handler.counts),
    }


async def throughput_run(total: int) -> Result:
    """State changes one process writes per second: ``total`` jobs created, then each walked to its end
    by its own asyncio task, all at once, as the scheduler's sends and polls do."""
    progress = Progress(f"ledger  N={total:,}")
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as folder:
        store = await Store.open(Path(folder) / "bot.db")
        try:
            created_started = time.perf_counter()
            ids = []
            for index in range(total):
                name = PROVIDERS[index % len(PROVIDERS)]
                new = NewJob(
                    channel_id=100,
                    user_id=1_000 + index % 50,
                    guild_id=1,
                    provider=name,
                    operation=Operation.IMAGE_TO_VIDEO.value,
                    params=PARAMS[name],
                    media={"path": f"bench-{name}"},
                    key=f"ledger-{index}",
                )
                ids.append((await store.create_job(new)).id)
            create_seconds = time.perf_counter() - created_started
            progress(f"{total:,} jobs created in {create_seconds:.2f} s; walking each to succeeded")

            async def walk(job_id: int) -> None:
                previous = JobState.QUEUED
                for state in THROUGHPUT_WALK:
                    fields: dict[str, Any] = {"task_id": f"task-{job_id}"} if state is JobState.RUNNING else {}
                    await store.transition(job_id, state, detail="bench", expect={previous}, **fields)
                    previous = state

            cpu_before, walk_started = time.process_time(), time.perf_counter()
            await asyncio.gather(*(walk(job_id) for job_id in ids))
            walk_seconds = time.perf_counter() - walk_started
            cpu = time.process_time() - cpu_before
            states = Counter(job.state.value for job in await store.get_jobs(ids))
        finally:
            await store.close()
    transitions = total * len(THROUGHPUT_WALK)
    progress(f"{transitions:,} transitions in {walk_seconds:.2f} s: {transitions / walk_seconds:,.0f}/s")
    return {
        "n": total,
        "creates_per_second": total / create_seconds,
        "transitions": transitions,
        "transition_seconds": walk_seconds,
        "transitions_per_second": transitions / walk_seconds,
        "cpu_share": cpu / walk_seconds,
        "states": dict(states),
    }


# The table, in the parent process.


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def every(runs: list[Result], check: Callable[[Result], bool]) -> bool | None:
    return all(check(run) for run in runs) if runs else None


def at_target(runs: list[Result], check: Callable[[Result], bool]) -> bool | None:
    found = [run for run in runs if run["n"] == TARGET_SIZE]
    return check(found[0]) if found else None


def round_ratio(run: Result) -> float:
    bound = run["hidream"]["round_bound"]
    return run["hidream"]["requests"] / bound if bound else math.nan


def pass_ratio(run: Result) -> float:
    bound = run["hidream"]["pass_bound"]
    return run["hidream"]["requests"] / bound if bound else math.nan


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def per_job(run: Result, name: str) -> str:
    counts = run["requests"][name]
    jobs = max(1, counts["jobs"])
    return f"{counts['all'] / jobs:.2f} (submit {counts['submit'] / jobs:.2f} + poll {counts['poll'] / jobs:.2f})"


def succeeded(run: Result) -> str:
    done = run["states"].get("succeeded", 0)
    others = ", ".join(f"{count:,} {state}" for state, count in run["states"].items() if state != "succeeded")
    missing = run["n"] - sum(run["states"].values())
    if missing:
        others = ", ".join(filter(None, [others, f"{missing:,} unfinished"]))
    return f"{done:,}" + (f" ({others})" if others else "")


def table(mains: list[Result], restarts: list[Result]) -> str:
    """The measurements, one column per N, and each target with its verdict."""
    p95_limit = POLL_INTERVAL + MAX_P95_OVER_INTERVAL
    both = list(zip(mains, restarts, strict=True))
    rows: list[tuple[str, list[str], str, str]] = [
        ("jobs succeeded", [succeeded(run) for run in mains], "", ""),
        (
            "jobs in flight at most",
            [f"{run['peak_in_flight']:,}" for run in mains],
            "N (the premise)",
            verdict(every(mains, lambda run: run["peak_in_flight"] >= run["n"])),
        ),
        ("enqueue rate", [f"{run['n'] / run['enqueue_seconds']:.0f} jobs/s" for run in mains], "", ""),
        ("hidream requests per job", [per_job(run, "hidream") for run in mains], "", ""),
        ("pixverse requests per job", [per_job(run, "pixverse") for run in mains], "", ""),
        ("vidu requests per job", [per_job(run, "vidu") for run in mains], "", ""),
        (
            "hidream polls: batched vs 1 per task",
            [f"{run['hidream']['requests']:,} vs {run['hidream']['tasks']:,}" for run in mains],
            "",
            "",
        ),
        (
            "hidream requests / Σ ceil(round/50)",
            [f"{round_ratio(run):.3f} ({plural(run['hidream']['rounds'], 'round')})" for run in mains],
            f"≤ {MAX_BATCH_RATIO}",
            verdict(every(mains, lambda run: round_ratio(run) <= MAX_BATCH_RATIO)),
        ),
        (
            "hidream requests / ceil(n/50) per pass",
            [f"{pass_ratio(run):.3f}" for run in mains],
            f"≤ {MAX_BATCH_RATIO}",
            verdict(every(mains, lambda run: pass_ratio(run) <= MAX_BATCH_RATIO)),
        ),
        ("detection delay p50", [f"{run['delay_p50']:.2f} s" for run in mains], "", ""),
        (
            "detection delay p95",
            [f"{run['delay_p95']:.2f} s" for run in mains],
            f"≤ {p95_limit:g} s",
            verdict(every(mains, lambda run: run["delay_p95"] <= p95_limit)),
        ),
        (
            "detection delay p95 hd/pv/vd",
            ["/".join(f"{run['delay_p95_by_provider'][name]:.2f}" for name in PROVIDERS) + " s" for run in mains],
            "",
            "",
        ),
        (
            "peak RSS (main / restart run)",
            [f"{run['peak_rss_mb']:.0f} / {restart['peak_rss_mb']:.0f} MB" for run, restart in both],
            f"≤ {MAX_RSS_MB:g} MB at {TARGET_SIZE:,}",
            verdict(
                at_target(
                    [{**run, "rss": max(run["peak_rss_mb"], restart["peak_rss_mb"])} for run, restart in both],
                    lambda run: run["rss"] <= MAX_RSS_MB,
                )
            ),
        ),
        ("CPU seconds per 1,000 jobs", [f"{run['cpu_per_1000']:.1f} s" for run in mains], "", ""),
        (
            "restart to first poll",
            [f"{run['first_poll_seconds']:.2f} s ({run['unfinished']:,} unfinished)" for run in restarts],
            f"≤ {MAX_RESTART_SECONDS:g} s at {TARGET_SIZE:,}",
            verdict(
                at_target(
                    restarts,
                    lambda run: run["first_poll_seconds"] <= MAX_RESTART_SECONDS and run["unfinished"] == run["n"],
                )
            ),
        ),
        ("restart to every job polled", [f"{run['every_poll_seconds']:.1f} s" for run in restarts], "", ""),
        (
            "wall time (main + restart run)",
            [f"{run['wall_seconds']:.0f} + {restart['wall_seconds']:.0f} s" for run, restart in both],
            "",
            "",
        ),
    ]
    header = ["", *(f"N = {run['n']:,}" for run in mains), "target", ""]
    lines = [header, *([label, *values, target, mark] for label, values, target, mark in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def describe(quick: bool) -> str:
    queue_seconds, run_seconds = timings(quick)
    runs = ", ".join(f"{name} {queue_seconds[name]:g} + {run_seconds[name]:g} s" for name in PROVIDERS)
    runs += f", each ±{RUN_SPREAD:.0%}"
    command = "python -m tests.bench" + (" --quick" if quick else "")
    return "\n".join(
        [
            f"{command} ({os.cpu_count()} CPUs, Python {platform.python_version()})",
            f"scheduler: poll interval {POLL_INTERVAL:g} s, no running or per-minute caps, "
            f"HiDream batches of {HiDream.poll_batch_size}; one {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} PNG input",
            f"fake queue + run time: {runs}; restart run: {RESTART_RUN_SECONDS:g} s runs",
        ]
    )


def measure(kind: str, size: int, quick: bool, *extra: str) -> Result:
    command = [sys.executable, "-m", "tests.bench", f"--{kind}", str(size), *(["--quick"] if quick else []), *extra]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith(RESULT_MARK))
    result: Result = json.loads(line.removeprefix(RESULT_MARK))
    return result


# The media section: inputs made in the parent, each case measured in its own subprocess.


def png_striped(width: int, height: int) -> bytes:
    """A complete RGB PNG with patterned rows, compressed as it is made, so that no pixels are held."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes((x * 7) % 256 for x in range(width * 3))
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def photo_jpeg(width: int, height: int, orientation: int = 1) -> bytes:
    """A JPEG with a photo's mix of smooth areas and grain (about 0.4 bytes a pixel at quality 90)."""
    grain = Image.effect_noise((width, height), 24)
    ramp = Image.linear_gradient("L").resize((width, height))
    mirrored = ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = Image.merge("RGB", (Image.blend(ramp, grain, 0.5), Image.blend(mirrored, grain, 0.3), grain))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def make_media_inputs(folder: Path) -> dict[str, Path]:
    inputs = {
        "huge_png": png_striped(*HUGE_PNG),
        "photo": photo_jpeg(*PHOTO),
        "photo_rotated": photo_jpeg(*PHOTO, orientation=6),
        "burst_photo": photo_jpeg(*BURST_PHOTO),
    }
    paths = {}
    for name, data in inputs.items():
        paths[name] = folder / f"{name}.{'png' if name.endswith('png') else 'jpg'}"
        paths[name].write_bytes(data)
    return paths


def rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process alone, in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def start_peak_rss() -> int:
    """Reset the peak RSS to the current RSS (Linux 4.0 or later) and return it, in KiB."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return rss_kib("VmRSS")


def prepare_case(path: Path, provider: str) -> Result:
    """One image prepared (or refused) for ``provider``, on a warm interpreter with the data in memory."""
    data = path.read_bytes()
    before = start_peak_rss()
    started = time.perf_counter()
    try:
        prepared = prepare_image(data, IMAGE_LIMITS[provider])
        outcome = f"{prepared.width}x{prepared.height} {prepared.format.value}, {len(prepared.data) / 1e6:.1f} MB"
    except MediaRejected as exc:
        outcome = f"refused: {exc}"
    seconds = time.perf_counter() - started
    return {
        "input_mb": len(data) / 1e6,
        "seconds": seconds,
        "growth_mb": (rss_kib("VmHWM") - before) / 1024,
        "outcome": outcome,
    }


async def burst_case(data: bytes, provider: str, count: int, *, bounded: bool) -> Result:
    """``count`` preparations started at once, through the pool or asyncio.to_thread, while a ticker
    measures how late the event loop wakes it."""
    limits = IMAGE_LIMITS[provider]
    pool = PreparationPool()
    lags: list[float] = []

    async def ticking() -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            lags.append(loop.time() - expected)

    def prepared_size() -> tuple[int, int]:
        prepared = prepare_image(data, limits)
        return prepared.width, prepared.height

    before = start_peak_rss()
    ticker = asyncio.ensure_future(ticking())
    await asyncio.sleep(TICK_SECONDS * 3)
    started = time.perf_counter()
    try:
        if bounded:
            sizes = await asyncio.gather(*(pool.run(prepared_size) for _ in range(count)))
        else:
            sizes = await asyncio.gather(*(asyncio.to_thread(prepared_size) for _ in range(count)))
        seconds = time.perf_counter() - started
    finally:
        ticker.cancel()
        pool.close()
    return {
        "seconds": seconds,
        "growth_mb": (rss_kib("VmHWM") - before) / 1024,
        "lag_max_ms": max(lags) * 1000,
        "lag_p95_ms": percentile(lags, 0.95) * 1000,
        "outcome": f"{len(sizes)} x {sizes[0][0]}x{sizes[0][1]}",
        "workers": pool.workers if bounded else min(32, (os.cpu_count() or 1) + 4),
    }


def media_case(case: Result) -> Result:
    path = Path(case["path"])
    if case["kind"] == "burst":
        return asyncio.run(burst_case(path.read_bytes(), case["provider"], BURST_SIZE, bounded=case["bounded"]))
    return prepare_case(path, case["provider"])


def measure_media_case(case: Result) -> Result:
    command = [sys.executable, "-m", "tests.bench", "--media-case", json.dumps(case)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith(RESULT_MARK))
    result: Result = json.loads(line.removeprefix(RESULT_MARK))
    return result


def media_section() -> str:
    """Every media case, and the table of what they measured against the targets."""
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-media-") as folder:
        paths = make_media_inputs(Path(folder))
        for provider in PROVIDERS:
            run = measure_media_case({"kind": "prepare", "path": str(paths["huge_png"]), "provider": provider})
            refused = run["outcome"].startswith("refused: ")
            ok = refused and run["seconds"] * 1000 < MAX_REFUSAL_MS and run["growth_mb"] < MAX_REFUSAL_GROWTH_MB
            rows.append(
                (
                    f"{HUGE_PNG[0]}x{HUGE_PNG[1]} PNG ({run['input_mb']:.1f} MB) for {provider}",
                    f"{run['seconds'] * 1000:.1f} ms, peak +{run['growth_mb']:.1f} MB, "
                    + ("refused" if refused else run["outcome"]),
                    f"< {MAX_REFUSAL_MS:g} ms, < {MAX_REFUSAL_GROWTH_MB:g} MB",
                    verdict(ok),
                )
            )
        for name, label in (("photo", ""), ("photo_rotated", ", EXIF-rotated")):
            for provider in PROVIDERS:
                run = measure_media_case({"kind": "prepare", "path": str(paths[name]), "provider": provider})
                ok = not run["outcome"].startswith("refused") and run["growth_mb"] < MAX_PREPARE_GROWTH_MB
                rows.append(
                    (
                        f"{PHOTO[0]}x{PHOTO[1]} JPEG{label} for {provider} ({IMAGE_LIMITS[provider].max_side} px)",
                        f"{run['seconds']:.2f} s, peak +{run['growth_mb']:.0f} MB, {run['outcome']}",
                        f"< {MAX_PREPARE_GROWTH_MB:g} MB",
                        verdict(ok),
                    )
                )
        for bounded in (True, False):
            case = {"kind": "burst", "path": str(paths["burst_photo"]), "provider": BURST_PROVIDER, "bounded": bounded}
            run = measure_media_case(case)
            way = f"pool of {run['workers']}" if bounded else f"asyncio.to_thread ({run['workers']} threads)"
            rows.append(
                (
                    f"{BURST_SIZE} x {BURST_PHOTO[0]}x{BURST_PHOTO[1]} JPEG at once, {way}",
                    f"loop lag max {run['lag_max_ms']:.1f} ms (p95 {run['lag_p95_ms']:.1f}), "
                    f"peak +{run['growth_mb']:.0f} MB, {run['seconds']:.2f} s",
                    f"lag < {MAX_LAG_MS:g} ms" if bounded else "(before: for comparison)",
                    verdict(run["lag_max_ms"] < MAX_LAG_MS) if bounded else "",
                )
            )
    header = ("media preparation", "measured", "target", "")
    lines = [header, *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def ledger_section(restarts: list[Result], *, quick: bool) -> str:
    """The issue 10 targets: an idle bot's CPU, the ledger's write rate, and a restart at 10,000 jobs
    (taken from ``restarts`` when the scheduler runs measured it, else measured here); ``quick`` measures
    QUICK_SIZE jobs instead, as a smoke check."""
    idle = measure("idle", QUICK_SIZE if quick else IDLE_SIZE, quick)
    ledger = measure("throughput", QUICK_SIZE if quick else THROUGHPUT_JOBS, quick)
    size = QUICK_SIZE if quick else TARGET_SIZE
    restart = next((run for run in restarts if run["n"] == size), None) or measure("restart", size, quick)
    restart_ok = restart["first_poll_seconds"] <= MAX_RESTART_SECONDS and restart["unfinished"] == restart["n"]
    rows = [
        (
            f"idle CPU, {idle['n']:,} jobs waiting for room",
            f"{idle['cpu_share']:.2%} of a core ({idle['cpu_seconds']:.2f} s CPU over {idle['idle_seconds']:.0f} s; "
            f"{idle['running']} running, {idle['queued']:,} queued, {idle['fake_requests']} fake requests)",
            f"≤ {MAX_IDLE_CPU_SHARE:.0%}",
            verdict(idle["settled"] and idle["cpu_share"] <= MAX_IDLE_CPU_SHARE),
        ),
        (
            "  enqueue, then every position shown",
            f"{idle['enqueue_seconds']:.1f} s ({idle['n'] / idle['enqueue_seconds']:,.0f} jobs/s), "
            f"then {idle['settle_seconds']:.1f} s; peak RSS {idle['peak_rss_mb']:.0f} MB",
            "",
            "",
        ),
        (
            "ledger state changes per second",
            f"{ledger['transitions_per_second']:,.0f}/s ({ledger['transitions']:,} in "
            f"{ledger['transition_seconds']:.2f} s, {ledger['n']:,} concurrent tasks)",
            f"≥ {MIN_TRANSITIONS_PER_SECOND:,.0f}/s",
            verdict(
                ledger["transitions_per_second"] >= MIN_TRANSITIONS_PER_SECOND
                and ledger["states"] == {JobState.SUCCEEDED.value: ledger["n"]}
            ),
        ),
        ("  jobs created per second", f"{ledger['creates_per_second']:,.0f}/s, one after another", "", ""),
        (
            "restart to first poll",
            f"{restart['first_poll_seconds']:.2f} s ({restart['unfinished']:,} unfinished; "
            f"every job asked for after {restart['every_poll_seconds']:.1f} s)",
            f"≤ {MAX_RESTART_SECONDS:g} s",
            verdict(restart_ok),
        ),
    ]
    header = ("ledger (issue 10)", "measured", "target", "")
    lines = [header, *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    logged = {kind: run["log"] for kind, run in (("idle", idle), ("restart", restart)) if run["log"]}
    if logged:
        text.append(f"Log records at WARNING or above: {logged}")
    return "\n".join(text)


# The metrics section (issue 12).

UNFINISHED_STATES = ("queued", "submitting", "running")
FINISHED_MIX = ("succeeded",) * 8 + ("failed", "cancelled")


def fill_ledger(path: Path, total: int) -> Counter[tuple[str, str]]:
    """``total`` jobs written straight into a migrated SQLite ledger in one executemany; the unfinished
    jobs by (provider, state)."""
    unfinished: Counter[tuple[str, str]] = Counter()
    draw = random.Random(total)
    moment = "2025-01-01T00:00:00.000000+00:00"
    rows = []
    for index in range(total):
        provider = PROVIDERS[index % len(PROVIDERS)]
        if draw.random() < SCRAPE_UNFINISHED_SHARE:
            state = draw.choice(UNFINISHED_STATES)
            unfinished[(provider, state)] += 1
        else:
            state = draw.choice(FINISHED_MIX)
        rows.append(
            (f"scrape-{index}", 100, 1_000 + index % 500, provider, "image_to_video", "{}", "{}", state, moment, moment)
        )
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO jobs (key, channel_id, user_id, provider, operation, params, media, state, created_at,"
            " updated_at, delivery) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'delivered')",
            rows,
        )
    return unfinished


async def scrape_run(total: int, scrapes: int = SCRAPES) -> Result:
    """``/metrics`` served over HTTP by the health server with ``total`` jobs in the ledger."""
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as folder:
        path = Path(folder) / "bot.db"
        await (await Store.open(path)).close()
        fill_started = time.monotonic()
        unfinished = fill_ledger(path, total)
        fill_seconds = time.monotonic() - fill_started
        store = await Store.open(path)
        metrics = Metrics()
        metrics.track(PROVIDERS)
        health = HealthServer({}, host="127.0.0.1", port=0, metrics=lambda: metrics.render(store))
        await health.start()
        try:
            url = f"http://127.0.0.1:{health.port}/metrics"
            timings_ms: list[float] = []
            async with aiohttp.ClientSession() as session:
                for attempt in range(scrapes + 1):
                    started = time.perf_counter()
                    async with session.get(url) as response:
                        response.raise_for_status()
                        text = await response.text()
                    if attempt:  # the first one warms the caches up
                        timings_ms.append((time.perf_counter() - started) * 1000)
        finally:
            await health.stop()
            await store.close()
    queued = sum(count for (_, state), count in unfinished.items() if state == "queued")
    return {
        "n": total,
        "unfinished": sum(unfinished.values()),
        "fill_seconds": fill_seconds,
        "median_ms": percentile(timings_ms, 0.5),
        "slowest_ms": max(timings_ms),
        "scrapes": len(timings_ms),
        "queued_ok": f'animate_jobs_queued{{provider="hidream"}} {float(unfinished[("hidream", "queued")])}' in text,
        "queued": queued,
        "bytes": len(text),
    }


def cpu_overhead(without: Result, with_metrics: Result) -> float:
    """The extra CPU per 1,000 jobs that collecting metrics took, as a share of the run without."""
    return float(with_metrics["cpu_per_1000"] / without["cpu_per_1000"] - 1)


def metrics_call_costs(calls: int = 20_000) -> dict[str, float]:
    """CPU seconds of one call of each metrics hook the bot makes, timed over ``calls`` calls."""
    from types import SimpleNamespace

    from providers.http import EndpointKind

    metrics = Metrics()
    metrics.track(PROVIDERS)
    observe = metrics.provider_observer("vidu")
    job: Any = SimpleNamespace(provider="vidu", state=JobState.SUCCEEDED, credits=60.0)

    def timed(call: Callable[[int], None]) -> float:
        started = time.process_time()
        for index in range(calls):
            call(index)
        return (time.process_time() - started) / calls

    return {
        "request": timed(lambda index: observe("vidu", EndpointKind.POLL, "ok", index / calls)),
        "job": timed(
            lambda index: (metrics.job_created(job), metrics.job_finished(job), metrics.announced("vidu", 1.0))
        ),
    }


def per_call_overhead(main: Result, costs: Mapping[str, float], scrape_seconds: float) -> Result:
    """What metrics add to a main run, from how often it calls each hook: every provider request is observed
    once, every job is counted created and finished and its announcement timed, and Prometheus scrapes every
    SCRAPE_INTERVAL seconds (each costing at most what one scrape of the 100,000-job ledger took)."""
    requests = sum(provider["all"] for provider in main["requests"].values())
    scrapes = math.ceil(main["wall_seconds"] / SCRAPE_INTERVAL)
    added = requests * costs["request"] + main["n"] * costs["job"] + scrapes * scrape_seconds
    spent = main["cpu_per_1000"] * main["n"] / 1000
    return {"requests": requests, "scrapes": scrapes, "added": added, "spent": spent, "share": added / spent}


def metrics_section(mains: list[Result], *, quick: bool) -> str:
    """The issue 12 targets: serving /metrics with 100,000 jobs in the ledger, and the CPU metrics add to the
    main run (at OVERHEAD_SIZE jobs, or QUICK_SIZE with ``quick``; the run without metrics is taken from
    ``mains`` when it has that size)."""
    scrape = measure("scrape", SCRAPE_LEDGER_SIZE, quick)
    size = QUICK_SIZE if quick else OVERHEAD_SIZE
    without = next((run for run in mains if run["n"] == size and not run.get("metrics")), None)
    without = without or measure("main", size, quick)
    with_metrics = measure("main", size, quick, "--with-metrics")
    overhead = cpu_overhead(without, with_metrics)
    largest = max(mains, key=lambda run: run["n"], default=None)
    counted = per_call_overhead(largest, metrics_call_costs(), scrape["median_ms"] / 1000) if largest else None
    rows = [
        (
            f"serve /metrics, {scrape['n']:,} jobs in the ledger",
            f"median {scrape['median_ms']:.1f} ms, slowest {scrape['slowest_ms']:.1f} ms of {scrape['scrapes']} "
            f"({scrape['unfinished']:,} unfinished, {scrape['bytes']:,} bytes; ledger filled in "
            f"{scrape['fill_seconds']:.1f} s)",
            f"< {MAX_SCRAPE_MS:g} ms",
            verdict(scrape["queued_ok"] and scrape["median_ms"] < MAX_SCRAPE_MS),
        ),
        (
            f"CPU added by metrics, main run N={size:,}",
            f"{overhead:+.1%} ({without['cpu_per_1000']:.2f} s without, {with_metrics['cpu_per_1000']:.2f} s with, "
            f"per 1,000 jobs; {with_metrics['scrapes']} scrapes)",
            f"< {MAX_METRICS_CPU_OVERHEAD:.0%} (measured at N={size:,}, not 10,000)",
            verdict(overhead < MAX_METRICS_CPU_OVERHEAD and with_metrics["scrapes"] > 0),
        ),
    ]
    if largest is not None and counted is not None:
        rows.append(
            (
                f"CPU added by metrics, main run N={largest['n']:,}",
                f"{counted['share']:.2%} ({counted['added']:.2f} s of {counted['spent']:.0f} s: "
                f"{counted['requests']:,} provider requests, {largest['n']:,} jobs, {counted['scrapes']} scrapes, "
                "each call's cost timed alone)",
                f"< {MAX_METRICS_CPU_OVERHEAD:.0%}",
                verdict(counted["share"] < MAX_METRICS_CPU_OVERHEAD),
            )
        )
    header = ("metrics (issue 12)", "measured", "target", "")
    lines = [header, *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def postgres_section_after(mains: list[Result], *, quick: bool) -> str:
    """The PostgreSQL run (tests/bench_postgres.py) at QUICK_SIZE or TARGET_SIZE, against this bench's main run
    of the same size."""
    from tests.bench_postgres import postgres_section

    size = QUICK_SIZE if quick else TARGET_SIZE
    return postgres_section(size, quick, next((run for run in mains if run["n"] == size), None))


def callbacks_section_after(*, quick: bool) -> str:
    """The callbacks section (tests/bench_callbacks.py): the main run again with callbacks on, and the listener
    under a flood of valid callbacks."""
    from tests.bench_callbacks import callbacks_section

    return callbacks_section(quick=quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help=f"a smoke check: N = {QUICK_SIZE} with short run times")
    parser.add_argument("--main", type=int, metavar="N", help="only the main run of N jobs; prints JSON")
    parser.add_argument("--restart", type=int, metavar="N", help="only the restart run of N jobs; prints JSON")
    parser.add_argument("--idle", type=int, metavar="N", help="only the idle run of N waiting jobs; prints JSON")
    parser.add_argument("--throughput", type=int, metavar="N", help="only the ledger write run of N jobs; prints JSON")
    parser.add_argument(
        "--ledger",
        action="store_true",
        help="only the ledger section (idle CPU, write rate, restart at 10,000; with --quick at 300)",
    )
    parser.add_argument(
        "--postgres",
        type=int,
        metavar="N",
        help="only the PostgreSQL run of N jobs across 3 processes, with the one-process main run it is compared with",
    )
    parser.add_argument("--media", action="store_true", help="only the media section (image preparation)")
    parser.add_argument(
        "--metrics", action="store_true", help="only the metrics section (/metrics at 100,000 jobs, CPU overhead)"
    )
    parser.add_argument("--scrape", type=int, metavar="N", help="only the /metrics run with N jobs; prints JSON")
    parser.add_argument("--with-metrics", action="store_true", help="the main run collects metrics")
    parser.add_argument(
        "--callbacks", action="store_true", help="the main run with callbacks on (tests/bench_callbacks.py)"
    )
    parser.add_argument("--media-case", metavar="JSON", help="one media case; prints JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, handlers=[logging.NullHandler()])
    if args.media_case is not None:
        print(RESULT_MARK + json.dumps(media_case(json.loads(args.media_case))), flush=True)
        return 0
    if args.media:
        started = time.monotonic()
        print(f"python -m tests.bench --media ({os.cpu_count()} CPUs, Python {platform.python_version()})", flush=True)
        print(media_section())
        print(f"Total time {time.monotonic() - started:.0f} s")
        return 0
    if args.scrape is not None:
        print(RESULT_MARK + json.dumps(asyncio.run(scrape_run(args.scrape))), flush=True)
        return 0
    if args.metrics:
        started = time.monotonic()
        print(
            f"python -m tests.bench --metrics ({os.cpu_count()} CPUs, Python {platform.python_version()})", flush=True
        )
        print(metrics_section([], quick=args.quick))
        print(f"Total time {time.monotonic() - started:.0f} s")
        return 0
    if args.idle is not None or args.throughput is not None:
        result = idle_run(args.idle, quick=args.quick) if args.idle is not None else throughput_run(args.throughput)
        print(RESULT_MARK + json.dumps(asyncio.run(result)), flush=True)
        return 0
    if args.ledger:
        started = time.monotonic()
        print(f"python -m tests.bench --ledger ({os.cpu_count()} CPUs, Python {platform.python_version()})", flush=True)
        print(ledger_section([], quick=args.quick))
        print(f"Total time {time.monotonic() - started:.0f} s")
        return 0
    if args.postgres is not None:
        from tests.bench_postgres import postgres_section

        started = time.monotonic()
        command = f"python -m tests.bench --postgres {args.postgres}"
        print(describe(args.quick).replace("python -m tests.bench", command, 1), flush=True)
        print(postgres_section(args.postgres, args.quick, measure("main", args.postgres, args.quick)))
        print(f"Total time {time.monotonic() - started:.0f} s")
        return 0
    if args.main is not None or args.restart is not None:
        run = (
            main_run(args.main, quick=args.quick, with_metrics=args.with_metrics, callbacks=args.callbacks)
            if args.main is not None
            else restart_run(args.restart, quick=args.quick)
        )
        print(RESULT_MARK + json.dumps(asyncio.run(run)), flush=True)
        return 0
    started = time.monotonic()
    sizes = (QUICK_SIZE,) if args.quick else SIZES
    print(describe(args.quick), flush=True)
    mains = [measure("main", size, args.quick) for size in sizes]
    restarts = [measure("restart", size, args.quick) for size in sizes]
    print(table(mains, restarts))
    logged = {
        f"N={run['n']:,} {kind}": run["log"]
        for kind, runs in (("main", mains), ("restart", restarts))
        for run in runs
        if run["log"]
    }
    if logged:
        print(f"Log records at WARNING or above: {logged}")
    print(postgres_section_after(mains, quick=args.quick))
    print(ledger_section(restarts, quick=args.quick))
    print(metrics_section(mains, quick=args.quick))
    print(status_section())
    print(callbacks_section_after(quick=args.quick))
    print(media_section())
    print(f"Total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

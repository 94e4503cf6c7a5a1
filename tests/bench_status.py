"""Benchmark of /status against a big ledger: ``python -m tests.bench_status`` (``make bench`` prints it too).

A SQLite ledger (migrated as the bot migrates it) is filled with JOBS jobs in one executemany: DAYS days of
history spread over the three providers and their models, mostly succeeded with some failed, timed out,
refused and cancelled, a few hundred in flight, from SERVERS servers. Then, ROUNDS times each, it times the
ledger's provider figures (``Store.provider_figures``), building the embed, and the whole answer as the
command gives it (the figures, the server's settings, usage and credits, the embed), and prints the median
and the 95th percentile against TARGET_MS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import Settings
from bot.jobs.admission import Limits, credits_now, usage_now
from bot.providers import PROVIDER_NAMES
from bot.store import Store
from bot.ui.status import ServerUsage, status_embed

JOBS = 100_000
DAYS = 30
SERVERS = 200
ROUNDS = 200
TARGET_MS = 200.0

#: Share of the jobs, then models with their usual run time in seconds.
PROVIDERS: dict[str, tuple[float, dict[str | None, float]]] = {
    "hidream": (0.3, {None: 150}),
    "pixverse": (0.35, {"v5": 90, "v5.5": 120, "v6": 180}),
    "vidu": (0.35, {"viduq2": 100, "viduq3-turbo": 60, "viduq3-pro": 240}),
}
ENDS = {"succeeded": 0.85, "failed": 0.05, "timed_out": 0.02, "rejected": 0.03, "cancelled": 0.05}
IN_FLIGHT = {"queued": 300, "submitting": 20, "running": 150}

_COLUMNS = (
    "key, guild_id, channel_id, user_id, provider, operation, model, params, media, state, created_at, updated_at,"
    " submitted_at, accepted_at, started_at, finished_at, next_check_at, credits, delivery"
)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def job_rows(now: datetime, total: int, seed: int = 12) -> list[tuple[object, ...]]:
    """``total`` job rows; the newest IN_FLIGHT ones are still queued, being sent or running."""
    pick = random.Random(seed)
    names = list(PROVIDERS)
    shares = [PROVIDERS[name][0] for name in names]
    ended, ended_shares = list(ENDS), list(ENDS.values())
    unfinished = [state for state, count in IN_FLIGHT.items() for _ in range(count)]
    rows: list[tuple[object, ...]] = []
    for index in range(total):
        provider = pick.choices(names, shares)[0]
        models = PROVIDERS[provider][1]
        model = pick.choice(list(models))
        operation = "stylize" if provider == "hidream" and pick.random() < 0.2 else "image_to_video"
        in_flight = index >= total - len(unfinished)
        state = unfinished[index - (total - len(unfinished))] if in_flight else pick.choices(ended, ended_shares)[0]
        run = models[model] * pick.uniform(0.6, 1.8)
        # Ended jobs end evenly over the DAYS up to now, oldest first; those in flight started lately.
        ends = now - timedelta(seconds=(total - len(unfinished) - index) / total * DAYS * 86400)
        accepted = now - timedelta(seconds=pick.uniform(0, 600)) if in_flight else ends - timedelta(seconds=run)
        created = accepted - timedelta(seconds=pick.uniform(1, 20))
        finished = None if in_flight else ends
        started = state not in ("queued", "submitting") and not (state == "cancelled" and pick.random() < 0.5)
        rows.append(
            (
                f"bench-{index}",
                1000 + pick.randrange(SERVERS),
                5000 + pick.randrange(SERVERS * 3),
                10_000 + pick.randrange(SERVERS * 25),
                provider,
                operation,
                model,
                json.dumps({"prompt": "a wave"}),
                json.dumps({"file": f"{index}.png", "kind": "image"}),
                state,
                stamp(created),
                stamp(finished or created),
                stamp(created) if started else None,
                stamp(accepted) if started else None,
                stamp(accepted) if started else None,
                stamp(finished) if finished else None,
                stamp(created) if in_flight else None,
                float(pick.choice((20, 40, 60))) if started and provider != "hidream" else None,
                "pending" if in_flight else "delivered",
            )
        )
    return rows


async def filled_ledger(path: Path, now: datetime, total: int) -> float:
    """Migrate a new ledger at ``path`` and write ``total`` jobs into it; returns the seconds the write took."""
    store = await Store.open(path, now=lambda: now)
    await store.close()
    rows = job_rows(now, total)
    started = time.perf_counter()
    with sqlite3.connect(path) as db:
        marks = ", ".join("?" for _ in _COLUMNS.split(","))
        db.executemany(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({marks})", rows)  # noqa: S608
    return time.perf_counter() - started


async def timed(rounds: int, work: Callable[[], Awaitable[object]]) -> Timing:
    """The median and the 95th percentile of ``rounds`` runs of ``work``."""
    spent = []
    for _ in range(rounds):
        started = time.perf_counter()
        await work()
        spent.append((time.perf_counter() - started) * 1000)
    ordered = sorted(spent)
    return Timing(statistics.median(ordered), ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)])


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p95_ms: float


@dataclass(frozen=True)
class Measured:
    jobs: int
    fill_seconds: float
    in_flight: int
    ended_last_hour: int
    query: Timing
    embed: Timing
    answer: Timing


async def server_usage(store: Store, settings: Settings, *, guild_id: int, user_id: int, now: datetime) -> ServerUsage:
    """What cogs/status.py reads of the server, the same way."""
    guild = await store.guild_settings(guild_id)
    return ServerUsage(
        limits=Limits.of(guild, settings),
        jobs=await usage_now(store, user_id=user_id, guild_id=guild_id, now=now),
        credits=await credits_now(store, user_id=user_id, guild_id=guild_id, now=now),
    )


async def measure(total: int = JOBS, rounds: int = ROUNDS) -> Measured:
    now = datetime.now(UTC)
    settings = Settings(_env_file=None, discord_token="bench")
    names = list(PROVIDER_NAMES)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        fill_seconds = await filled_ledger(path, now, total)
        store = await Store.open(path, now=lambda: now)
        try:
            figures = await store.provider_figures(names, now=now)
            server = await server_usage(store, settings, guild_id=1000, user_id=10_000, now=now)

            async def query() -> object:
                return await store.provider_figures(names, now=now)

            async def embed() -> object:
                return status_embed(figures, configured=names, turned_off=(), server=server, language="en-US")

            async def answer() -> object:
                found = await store.provider_figures(names, now=now)
                usage = await server_usage(store, settings, guild_id=1000, user_id=10_000, now=now)
                return status_embed(found, configured=names, turned_off=(), server=usage, language="en-US")

            return Measured(
                jobs=total,
                fill_seconds=fill_seconds,
                in_flight=sum(provider.in_flight for provider in figures.values()),
                ended_last_hour=sum(provider.ended_last_hour for provider in figures.values()),
                query=await timed(rounds, query),
                embed=await timed(rounds, embed),
                answer=await timed(rounds, answer),
            )
        finally:
            await store.close()


def status_section(total: int = JOBS, rounds: int = ROUNDS) -> str:
    """The /status table of ``make bench``: the answer's parts and the whole, against TARGET_MS."""
    result = asyncio.run(measure(total, rounds))

    def times(timing: Timing) -> str:
        return f"median {timing.median_ms:.2f} ms, p95 {timing.p95_ms:.2f} ms over {rounds} runs"

    rows = [
        (
            f"ledger of {result.jobs:,} jobs (SQLite)",
            f"{DAYS} days, {result.in_flight} in flight, {result.ended_last_hour} ended in the last hour; "
            f"written in {result.fill_seconds:.1f} s",
            "",
            "",
        ),
        ("  provider figures (one statement)", times(result.query), "", ""),
        ("  building the embed", times(result.embed), "", ""),
        (
            "/status answer (figures, server usage, embed)",
            times(result.answer),
            f"p95 < {TARGET_MS:g} ms",
            "PASS" if result.answer.p95_ms < TARGET_MS else "FAIL",
        ),
    ]
    header = ("/status (issue 12)", "measured", "target", "")
    lines = [header, *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_status", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"jobs in the ledger (default {JOBS:,})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"timed runs of each part (default {ROUNDS})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"python -m tests.bench_status ({os.cpu_count()} CPUs, Python {platform.python_version()})", flush=True)
    print(status_section(args.jobs, args.rounds))
    print(f"Total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

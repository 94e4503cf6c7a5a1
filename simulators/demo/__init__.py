"""``make demo``: the unmodified bot against the simulated Discord and providers, shown on a local page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Final

from .server import HOST, demo_port, serving
from .world import DemoWorld

DATA_DIR: Final = Path("demo-data")
#: When this package was loaded: the start-up clock where the process's own start time cannot be read.
LOADED: Final = time.monotonic()


def seconds_since_start() -> float:
    """Seconds since this process started, so that the interpreter's start and the imports count too.

    The start comes from /proc (Linux); elsewhere the count begins when this package was loaded.
    """
    try:
        after_name = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        # Field 22 of stat(5), starttime, in clock ticks since boot; the split list begins at field 3.
        started = int(after_name[19]) / os.sysconf("SC_CLK_TCK")
        return max(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - LOADED


def fresh_data_dir(folder: Path) -> Path:
    """The demo's ledger folder, emptied: the simulated Discord starts empty, so old jobs would point nowhere."""
    for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "inputs", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def run_demo(port: int, data_dir: Path, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT or SIGTERM (or cancellation)."""
    print("Starting the demo: the simulated Discord and providers, then the bot against them…", flush=True)
    world = DemoWorld(fresh_data_dir(data_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with world.running(), serving(world, port) as bound:
        print(
            f"Demo ready: http://{HOST}:{bound} (bound to loopback only; the bot, Discord and the providers are "
            f"simulated on this machine, no account or network needed; started in {seconds_since_start():.1f} s). "
            f"Ledger in {data_dir}/. Ctrl-C stops it.",
            flush=True,
        )
        if ready is not None:
            ready.set()
        await stop.wait()


def main() -> int:
    try:
        port = demo_port()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The simulated server has no voice channels; the missing voice libraries are no news here.
    logging.getLogger("discord.client").setLevel(logging.ERROR)
    try:
        asyncio.run(run_demo(port, DATA_DIR))
    except OSError as exc:
        print(f"The demo cannot start: {exc}. Set DEMO_PORT to a free port.", file=sys.stderr)
        return 2
    return 0

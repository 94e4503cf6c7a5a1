"""Where uploads become provider inputs: a few threads, off the event loop.

Decoding and re-encoding a large image takes a second of CPU and up to a couple of hundred MB; a fixed
number of workers keeps the loop free and means a burst of commands waits in line instead of
multiplying the peak memory.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_WORKERS = 2


class PreparationPool:
    """Runs preparations in at most ``workers`` threads; the rest wait in submission order."""

    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        if workers < 1:
            raise ValueError("a preparation pool needs at least one worker")
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare")

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` in a worker; RuntimeError once the pool is closed."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    def close(self) -> None:
        """Drop what has not started and wait for the preparations already running."""
        self._executor.shutdown(wait=True, cancel_futures=True)

"""A process that runs the scheduler against given provider URLs until it is killed (used by the crash tests).

Finished jobs are announced to a delivery endpoint with the job key as nonce (as Discord's
``enforce_nonce`` would dedupe them), then marked delivered in the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from bot.jobs.inputs import InputStore
from bot.jobs.scheduler import ProviderLimits, Scheduler, SchedulerSettings
from bot.store import Job, Store
from providers import VideoProvider
from providers.hidream import HiDream
from providers.http import RetryPolicy
from providers.pixverse import PixVerse
from providers.vidu import Vidu


async def main(args: argparse.Namespace) -> None:
    store = await Store.open(Path(args.db))
    retry = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)
    async with aiohttp.ClientSession() as session:
        providers: dict[str, VideoProvider] = {
            "hidream": HiDream(session, SecretStr(os.environ["HD_KEY"]), base_url=args.hidream, timeout=5, retry=retry),
            "pixverse": PixVerse(
                session, SecretStr(os.environ["PV_KEY"]), base_url=args.pixverse, timeout=5, retry=retry
            ),
            "vidu": Vidu(session, SecretStr(os.environ["VD_KEY"]), base_url=args.vidu, timeout=5, retry=retry),
        }
        hold = ProviderLimits(max_running=0)
        limits = {name: hold for name in providers} if args.hold else {name: ProviderLimits() for name in providers}
        settings = SchedulerSettings(poll_interval=0.05, max_poll_interval=0.2, limits=limits)
        scheduler = Scheduler(store, providers, InputStore(Path(args.inputs)), settings)

        async def deliver(job: Job) -> None:
            if not job.state.finished:
                return
            async with session.post(args.delivery, json={"nonce": job.key, "state": job.state.value}) as response:
                response.raise_for_status()
            await scheduler.mark_delivered(job.id)

        scheduler.subscribe(deliver)
        await scheduler.start()
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("db", "inputs", "hidream", "pixverse", "vidu", "delivery"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--hold", action="store_true", help="send nothing: every provider is at its cap")
    asyncio.run(main(parser.parse_args(sys.argv[1:])))

"""`python -m bot demo` as a process on a free port, for the HTTP and the browser tests of the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.discord_world import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Demo:
    url: str
    process: subprocess.Popen[str]
    banner: str
    #: What the demo printed (and logged), as it goes.
    output: Path


def start_demo(folder: Path) -> Iterator[Demo]:
    """``python -m bot demo`` in ``folder`` on a free port, once it printed that it is ready; stopped after."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.endswith(("_TOKEN", "_API_KEY"))}
    env.update(PYTHONPATH=str(ROOT), DEMO_PORT=str(port), PYTHONUNBUFFERED="1")
    output = folder / "demo.log"
    with output.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "demo"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
    try:
        banner = wait_for_banner(process, output)
        yield Demo(f"http://127.0.0.1:{port}", process, banner, output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_banner(process: subprocess.Popen[str], output: Path) -> str:
    while True:
        lines = output.read_text().splitlines()
        banner = next((line for line in lines if line.startswith("Demo ready")), None)
        if banner is not None:
            return banner
        if process.poll() is not None:
            raise AssertionError(f"the demo stopped before it was ready:\n{output.read_text()}")
        time.sleep(0.1)

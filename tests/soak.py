"""The seeded soak: the real bot as a process against the fake Discord and the fake providers, under faults.

``python -m tests.soak`` (``make soak``) runs the long plan; ``--short`` (``make soak-short``) the CI one.
``SOAK_SEED`` or ``--seed`` replays a plan: the same seed gives the same members, commands, times and
faults (real timing still differs between runs). Every invariant is checked from outside: on the fake
Discord's messages and interactions, the fakes' tasks and the bot's log. Exit status 1 when one breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import aiohttp

from simulators.fake_discord import FakeDiscord, FakeMessage, FakeUser, InteractionRecord
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeProvider, FakeVidu, Outcome, build_mp4
from tests.conftest import image_bytes
from tests.discord_world import free_port
from tests.postgres import running_server

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"hidream": "hd-soak-key", "pixverse": "pv-soak-key", "vidu": "vd-soak-key"}
SUBMIT_ROUTES = {"hidream": "submit_img2video", "pixverse": "generate", "vidu": "create"}
POLL_ROUTES = {"hidream": "batch_query", "pixverse": "result", "vidu": "creations"}
HTTP_TIMEOUT = 3.0
POLL_INTERVAL = 0.5
STOPS = ("sigkill", "sigterm")
ACK_WITHIN = 3.0
FINAL_WORDS = {
    "Done": "succeeded",
    "Failed": "failed",
    "Refused by content review": "rejected",
    "Cancelled": "cancelled",
    "Timed out": "timed out",
}
RUNNING_WORDS = ("Waiting for its turn", "Sending to the provider", "Generating")
#: The sentence of issue 18 §1 for a command the bot acknowledged but never made into a job.
RESTARTED = re.compile(r"restarted before (?:the|this) job was made", re.IGNORECASE)
LABEL = re.compile(r"soak job (\d{3})")
ANNOUNCEMENT = re.compile(r"^<@(\d+)> .*?\bjob (\d+)\b")
READY = re.compile(r"your video from job (\d+) is ready")
ERROR_ID = re.compile(r"\berror (?:id )?[0-9a-f]{8}\b", re.IGNORECASE)


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """One bot process of the soak: its name and the shards whose gateway it connects."""

    name: str
    #: SHARD_IDS for the process; None leaves it (and SHARD_COUNT) unset: one process, every shard.
    shard_ids: str | None
    shards: tuple[int, ...]

    def describe(self) -> str:
        if self.shard_ids is None:
            return "all shards"
        return ", ".join(f"shard {shard}" for shard in self.shards) or "no gateway"


SHARD_COUNT = 2
ONE_PROCESS = (Role("bot", None, (0,)),)
#: With PostgreSQL: issue 11's layout, gateway shards 0 and 1 in a process each and a process without a gateway.
THREE_PROCESSES = (Role("shard0", "0", (0,)), Role("shard1", "1", (1,)), Role("gatewayless", "none", ()))


def roles(processes: int) -> tuple[Role, ...]:
    return ONE_PROCESS if processes == 1 else THREE_PROCESSES


@dataclass(frozen=True)
class PlannedJob:
    """One member's command: when, where, what, how it ends at the provider, and what the member does."""

    index: int
    at: float
    member: int
    provider: str
    operation: str
    outcome: str
    cancel_after: float | None
    revoke_after: float | None
    #: A phone photo (4000 x 3000 JPEG) rather than a small PNG: its preparation takes a while.
    photo: bool = False

    @property
    def label(self) -> str:
        return f"soak job {self.index:03d}"


@dataclass(frozen=True)
class PlannedFault:
    at: float
    kind: str
    provider: str = ""
    times: int = 1
    status: int = 500
    #: For a stop: the index of the bot process it hits.
    process: int = 0


@dataclass(frozen=True)
class Plan:
    seed: int
    short: bool
    span: float
    members: int
    jobs: tuple[PlannedJob, ...]
    faults: tuple[PlannedFault, ...]
    processes: int = 1

    def describe(self) -> str:
        kinds = Counter(fault.kind for fault in self.faults)
        providers = Counter(job.provider if job.operation == "animate" else "stylize" for job in self.jobs)
        described = (
            f"{len(self.jobs)} jobs from {self.members} members over {self.span:.0f} s "
            f"({', '.join(f'{name} {count}' for name, count in sorted(providers.items()))}); "
            f"faults: {', '.join(f'{kind} {count}' for kind, count in sorted(kinds.items()))}"
        )
        if self.processes > 1:
            names = roles(self.processes)
            stops = ", ".join(
                f"{fault.kind} {names[fault.process].name} at {fault.at:.1f} s"
                for fault in self.faults
                if fault.kind in STOPS
            )
            described += f"; {self.processes} processes, stops: {stops}"
        return described


def make_plan(seed: int, *, short: bool, processes: int = 1) -> Plan:
    """Everything the soak will do, decided up front from the seed (with several processes, whom each stop hits)."""
    rng = random.Random(seed)
    count, span, members = (40, 70.0, 12) if short else (120, 240.0, 12)
    faults: list[PlannedFault] = []
    # The stops fall in separate slots of the span, so each restart is over before the next stop.
    stops = ["sigkill"] if short else ["sigkill", "sigkill", "sigkill", "sigterm"]
    rng.shuffle(stops)
    slot = span / (len(stops) + 1)
    for number, kind in enumerate(stops, start=1):
        faults.append(PlannedFault(round(slot * number + rng.uniform(-0.25, 0.25) * slot, 2), kind))
    # Members come in rushes, one of them just before each stop, so a stop lands among commands in flight.
    rush = 4 if short else 6
    rushed = [(stop.at - rng.uniform(0.0, 1.0), True) for stop in faults for _ in range(rush)]
    spread = [(rng.uniform(0, span), rng.random() < 0.2) for _ in range(count - len(rushed))]
    jobs = []
    for index, (at, photo) in enumerate(sorted((max(0.0, at), photo) for at, photo in rushed + spread)):
        stylize = rng.random() < 0.1
        provider = "hidream" if stylize else rng.choice(("hidream", "pixverse", "vidu"))
        outcome = rng.choices(("success", "failed", "moderation"), weights=(84, 8, 8))[0]
        jobs.append(
            PlannedJob(
                index=index,
                at=round(at, 2),
                member=rng.randrange(members),
                provider=provider,
                operation="stylize" if stylize else "animate",
                outcome=outcome,
                cancel_after=round(rng.uniform(1.0, 6.0), 2) if rng.random() < 0.1 else None,
                revoke_after=round(rng.uniform(0.5, 8.0), 2) if rng.random() < 0.08 else None,
                photo=photo and not stylize,
            )
        )
    bursts = 2 if short else 5
    for _ in range(bursts):
        provider = rng.choice(tuple(KEYS))
        route = rng.choice(("submit", "poll"))
        faults.append(PlannedFault(round(rng.uniform(0, span), 2), f"{route}_5xx", provider, rng.randint(2, 4)))
        provider = rng.choice(tuple(KEYS))
        faults.append(PlannedFault(round(rng.uniform(0, span), 2), "poll_malformed", provider, rng.randint(1, 2)))
    for _ in range(1 if short else 3):
        provider = rng.choice(tuple(KEYS))
        faults.append(PlannedFault(round(rng.uniform(0, span), 2), "create_unanswered", provider))
    faults.append(PlannedFault(round(rng.uniform(0, span), 2), "vidu_create_late", "vidu"))
    for _ in range(1 if short else 3):
        faults.append(PlannedFault(round(rng.uniform(0, span), 2), "discord_5xx", times=rng.randint(1, 3), status=500))
        faults.append(PlannedFault(round(rng.uniform(0, span), 2), "discord_5xx", times=1, status=503))
    ordered = sorted(faults, key=lambda fault: fault.at)
    if processes > 1:
        # Drawn after everything else, so that a seed's one-process plan stays what it was.
        ordered = [
            replace(fault, process=rng.randrange(processes)) if fault.kind in STOPS else fault for fault in ordered
        ]
    return Plan(seed, short, span, members, tuple(jobs), tuple(ordered), processes)


# -- what happened ----------------------------------------------------------------------------


@dataclass
class Sent:
    """An interaction the soak pushed: a command or a Cancel click."""

    job: PlannedJob
    record: InteractionRecord
    kind: str
    user: FakeUser


@dataclass
class Violation:
    invariant: str
    examples: list[str] = field(default_factory=list)


@dataclass
class Outcomes:
    table: list[tuple[str, str]]
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations


class BotProcess:
    """``python -m tests.bot_child`` in one role, restarted after each stop the plan makes, logging to one file."""

    def __init__(self, role: Role, env: dict[str, str], folder: Path, log_path: Path, log: IO[bytes]) -> None:
        self.role = role
        self.env = env
        self.folder = folder
        self.log_path = log_path
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.expected_exit = False
        self.unexpected_exits: list[str] = []
        self.starts = 0
        #: Set while the process serves: commands and clicks for its shards wait for it.
        self.up = asyncio.Event()
        #: (stopped at, back at) on the fake Discord's clock.
        self.down: list[tuple[float, float]] = []
        self.health_url: str | None = None
        #: When each start began (time.monotonic, the fake providers' clock).
        self.started_at: list[float] = []
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.expected_exit = False
        env = self.env
        if self.role.shard_ids is not None:
            port = free_port()
            env = {**env, "SHARD_IDS": self.role.shard_ids, "HEALTH_PORT": str(port)}
            self.health_url = f"http://127.0.0.1:{port}/healthz"
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bot_child", cwd=self.folder, env=env, stderr=self.log, stdout=self.log
        )
        self.starts += 1
        self.started_at.append(time.monotonic())
        self._watch = asyncio.create_task(self._watch_exit(self.process))

    async def _watch_exit(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if not self.expected_exit:
            self.unexpected_exits.append(f"start {self.starts}: exited with status {code}")

    def kill(self) -> None:
        """Leave no bot behind, whatever happened to the soak."""
        if self.process is not None and self.process.returncode is None:
            self.expected_exit = True
            self.process.kill()

    async def stop(self, how: signal.Signals, *, within: float = 120.0) -> int:
        assert self.process is not None
        self.expected_exit = True
        self.process.send_signal(how)
        return await asyncio.wait_for(self.process.wait(), within)

    async def until_healthy(self, within: float) -> None:
        """Wait until its /healthz answers 200 (gateway, ledger and scheduler all well)."""
        if self.health_url is None:
            return
        async with aiohttp.ClientSession() as session, asyncio.timeout(within):
            while True:
                if self.process is None or self.process.returncode is not None:
                    raise AssertionError(f"{self.role.name} exited while starting; see {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.health_url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)

    @property
    def name(self) -> str:
        return self.role.name


@dataclass(frozen=True)
class Stop:
    """A stop the plan made, as it happened."""

    kind: str
    process: str
    at: float
    down: float


class Soak:
    def __init__(self, plan: Plan, folder: Path, *, database_url: str | None = None) -> None:
        self.plan = plan
        self.folder = folder
        #: The ledger: a SQLite file in the folder unless a PostgreSQL database is given.
        self.database_url = database_url or f"sqlite:///{folder / 'bot.db'}"
        self.roles = roles(plan.processes)
        self.sharded = len(self.roles) > 1
        self.discord = FakeDiscord(shard_count=SHARD_COUNT if self.sharded else 1)
        rule = self._outcome_rule
        self.providers: dict[str, FakeProvider] = {
            "hidream": FakeHiDream(
                api_key=KEYS["hidream"], queue_seconds=0.5, run_seconds=4.0, outcome_rule=rule, tag_media=True
            ),
            "pixverse": FakePixVerse(
                api_key=KEYS["pixverse"], queue_seconds=0.5, run_seconds=4.0, outcome_rule=rule, tag_media=True
            ),
            "vidu": FakeVidu(
                api_key=KEYS["vidu"], queue_seconds=0.5, run_seconds=5.0, outcome_rule=rule, tag_media=True
            ),
        }
        self.outcome_of = {job.label: job.outcome for job in plan.jobs}
        self.sent: list[Sent] = []
        self.bots: list[BotProcess] = []
        self.stops: Counter[str] = Counter()
        self.stopped: list[Stop] = []
        self.sigterm_codes: list[tuple[str, int]] = []
        self.faults_set: Counter[str] = Counter()
        self.revoked = 0
        self.members: list[FakeUser] = []
        self.guilds: list[Any] = []
        self.image = image_bytes(640, 360)
        self.photo = image_bytes(4000, 3000, "JPEG")
        self.clip = build_mp4(duration=2.0)

    def _outcome_rule(self, body: dict[str, Any]) -> Outcome | None:
        match = LABEL.search(str(body.get("prompt", "")))
        return Outcome(self.outcome_of[match.group(0)]) if match and match.group(0) in self.outcome_of else None

    def _world(self) -> None:
        fake = self.discord
        self.members = [fake.add_user(f"member{number:02d}") for number in range(self.plan.members)]
        half = self.plan.members // 2
        # Sharded, the two servers live on different shards (Discord: shard = (guild_id >> 22) % shard_count).
        self.guilds = [
            fake.add_guild("Soak One", members=self.members[:half], shard=0 if self.sharded else None),
            fake.add_guild("Soak Two", members=self.members[half:], shard=1 if self.sharded else None),
        ]

    def channel_of(self, member: int) -> Any:
        return self.guilds[0 if member < self.plan.members // 2 else 1].channels[0]

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.endswith(("_API_KEY", "_TOKEN", "_URL"))}
        env.update(
            PYTHONPATH=str(ROOT),
            FAKE_DISCORD_API=self.discord.api_url,
            FAKE_DISCORD_GATEWAY=self.discord.gateway_url,
            DISCORD_TOKEN=self.discord.token,
            DISCORD_GUILD_IDS=",".join(str(guild.id) for guild in self.guilds),
            DATABASE_URL=self.database_url,
            INPUTS_DIR=str(self.folder / "inputs"),
            POLL_INTERVAL_SECONDS="0.5",
            PROGRESS_EDIT_SECONDS="1",
            HTTP_TIMEOUT_SECONDS=str(HTTP_TIMEOUT),
            MAX_ACTIVE_JOBS_PER_USER="0",
            HIDREAM_SUBMITS_PER_MINUTE="0",
            HIDREAM_STYLIZE_SUBMITS_PER_MINUTE="0",
            HEALTH_PORT="0",
            LOG_LEVEL="INFO",
        )
        if self.sharded:
            # Each process gets its own SHARD_IDS and HEALTH_PORT when it starts (BotProcess.start).
            env.update(SHARD_COUNT=str(SHARD_COUNT), HEALTH_HOST="127.0.0.1")
        for name, fake in self.providers.items():
            env[f"{name.upper()}_API_KEY"] = KEYS[name]
            env[f"{name.upper()}_BASE_URL"] = fake.base_url
        return env

    def _identified(self, shard: int | None) -> int:
        """IDENTIFYs so far on one shard (None: on any)."""
        return sum(1 for data in self.discord.identifies if shard is None or (data.get("shard") or [0])[0] == shard)

    async def _started(self, bot: BotProcess) -> None:
        shards: tuple[int | None, ...] = (None,) if bot.role.shard_ids is None else bot.role.shards
        identified = {shard: self._identified(shard) for shard in shards}
        synced = len(self.discord.syncs)
        # The process with shard 0 syncs the commands of both servers.
        syncs = 2 if 0 in bot.role.shards else 0
        await bot.start()
        await self._wait(
            lambda: (
                all(self._identified(shard) > before for shard, before in identified.items())
                and len(self.discord.syncs) >= synced + syncs
            ),
            60.0,
        )
        await bot.until_healthy(60.0)
        bot.up.set()

    def serving(self, guild_id: int | None) -> BotProcess:
        """The process whose gateway receives a server's commands and clicks."""
        shard = self.discord.shard_of(guild_id)
        return next(bot for bot in self.bots if shard in bot.role.shards)

    async def run(self) -> Outcomes:
        started = time.monotonic()
        self._world()
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.discord)
            for fake in self.providers.values():
                await stack.enter_async_context(fake)
            env = self.env()
            for role in self.roles:
                log_path = self.folder / f"{role.name}.log"
                log = stack.enter_context(log_path.open("ab"))
                bot = BotProcess(role, env, self.folder, log_path, log)
                stack.callback(bot.kill)
                self.bots.append(bot)
            await asyncio.gather(*(self._started(bot) for bot in self.bots))
            begin = time.monotonic()
            events = [self._command(job, begin) for job in self.plan.jobs]
            events += [self._fault(fault, begin) for fault in self.plan.faults]
            await asyncio.gather(*events)
            settle = 90.0 if self.plan.short else 240.0
            await self._settle(settle)
            await asyncio.gather(
                *(
                    bot.stop(signal.SIGTERM)
                    for bot in self.bots
                    if bot.process is not None and bot.process.returncode is None
                )
            )
            logs = {bot.name: bot.log_path.read_text(errors="replace").splitlines() for bot in self.bots}
            return self._judge(logs, time.monotonic() - started)
        raise AssertionError("unreachable")

    async def _at(self, begin: float, offset: float) -> None:
        await asyncio.sleep(max(0.0, begin + offset - time.monotonic()))

    async def _command(self, job: PlannedJob, begin: float) -> None:
        await self._at(begin, job.at)
        user = self.members[job.member]
        channel = self.channel_of(job.member)
        await self.serving(channel.guild_id).up.wait()
        prompt = f"{job.label}: a cat waves at the camera"
        if job.operation == "stylize":
            attachment = self.discord.add_attachment("clip.mp4", self.clip, "video/mp4")
            payload = self.discord.slash(
                "stylize",
                options={"style": "ink_wash", "prompt": prompt},
                attachments={"video": attachment},
                user=user,
                channel=channel,
            )
        else:
            if job.photo:
                attachment = self.discord.add_attachment("cat.jpg", self.photo, "image/jpeg")
            else:
                attachment = self.discord.add_attachment("cat.png", self.image, "image/png")
            payload = self.discord.slash(
                "animate",
                subcommand=job.provider,
                options={"prompt": prompt},
                attachments={"image": attachment},
                user=user,
                channel=channel,
            )
        record = await self.discord.push_interaction(payload, timeout=120)
        self.sent.append(Sent(job, record, "command", user))
        follow_ups = []
        if job.revoke_after is not None:
            follow_ups.append(self._revoke(record, job.revoke_after))
        if job.cancel_after is not None:
            follow_ups.append(self._cancel(job, record, user, job.cancel_after))
        await asyncio.gather(*follow_ups)

    async def _revoke(self, record: InteractionRecord, after: float) -> None:
        self.discord.revoke_token(record, after=after)
        self.revoked += 1

    async def _cancel(self, job: PlannedJob, command: InteractionRecord, user: FakeUser, after: float) -> None:
        await asyncio.sleep(after)
        await self.serving(command.guild_id).up.wait()
        card = self.discord.original(command)
        button = (
            next((custom for custom in card.custom_ids() if custom.startswith("job:cancel:")), None) if card else None
        )
        if card is None or button is None:
            return
        click = self.discord.click(button, card, user=user)
        record = await self.discord.push_interaction(click, timeout=120)
        self.sent.append(Sent(job, record, "cancel", user))

    async def _fault(self, fault: PlannedFault, begin: float) -> None:
        await self._at(begin, fault.at)
        kind = fault.kind
        if kind in STOPS:
            bot = self.bots[fault.process]
            await bot.up.wait()
            bot.up.clear()
            stopped = self.discord.now()
            at = time.monotonic() - begin
            code = await bot.stop(signal.SIGKILL if kind == "sigkill" else signal.SIGTERM)
            if kind == "sigterm":
                self.sigterm_codes.append((bot.name, code))
            self.stops[kind] += 1
            await self._started(bot)
            bot.down.append((stopped, self.discord.now()))
            self.stopped.append(Stop(kind, bot.name, at, self.discord.now() - stopped))
            return
        provider = self.providers.get(fault.provider)
        if kind == "submit_5xx" and provider is not None:
            provider.fail(SUBMIT_ROUTES[fault.provider], "server_error", times=fault.times, status=503)
        elif kind == "poll_5xx" and provider is not None:
            provider.fail(POLL_ROUTES[fault.provider], "server_error", times=fault.times, status=502)
        elif kind == "poll_malformed" and provider is not None:
            provider.fail(POLL_ROUTES[fault.provider], "malformed", times=fault.times)
        elif kind == "create_unanswered" and provider is not None:
            # The provider makes the task; its answer never reaches the bot.
            provider.fail(SUBMIT_ROUTES[fault.provider], "hang", after=True, seconds=600)
        elif kind == "vidu_create_late" and provider is not None:
            provider.fail("create", "hang", lands_late=True, seconds=HTTP_TIMEOUT + 4)
        elif kind == "discord_5xx":
            deliveries = r"^/(channels/\d+/messages|webhooks/\d+/[^/]+)$"
            self.discord.fail_requests("POST", deliveries, status=fault.status, times=fault.times)
        self.faults_set[kind] += fault.times

    # -- settling -----------------------------------------------------------------------------

    def commands(self) -> list[Sent]:
        return [sent for sent in self.sent if sent.kind == "command"]

    def _unsettled(self) -> list[Sent]:
        waiting = []
        for sent in self.commands():
            if not sent.record.acknowledged:
                continue
            card = self.discord.original(sent.record)
            if card is None or card.loading:
                continue
            view = read_card(card)
            if view.restarted:
                continue
            announced = view.final != "succeeded" or view.job_id is None or bool(self._announcements(view.job_id))
            if view.final is None or view.offers_cancel or not announced:
                waiting.append(sent)
        return waiting

    def _loading(self) -> list[Sent]:
        return [
            sent
            for sent in self.commands()
            if sent.record.acknowledged and (card := self.discord.original(sent.record)) is not None and card.loading
        ]

    async def _settle(self, within: float) -> None:
        """Wait until every card shows its end and every success is announced (or the time is up).

        A command acknowledged before a stop may become its card (or an apology) only once the stopped
        process's lease has expired, and that card must then end too, so both are waited for together.
        """
        with contextlib.suppress(TimeoutError):
            await self._wait(lambda: not self._loading() and not self._unsettled(), within)

    async def _wait(self, condition: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within):
            while not condition():
                with contextlib.suppress(TimeoutError):
                    await self.discord.wait_until(condition, timeout=1.0)

    # -- judging ------------------------------------------------------------------------------

    def _announcements(self, job_id: int) -> list[FakeMessage]:
        return [
            message
            for message in self.discord.messages(include_ephemeral=False)
            if (match := ANNOUNCEMENT.match(message.content)) and int(match.group(2)) == job_id
        ]

    def _tasks(self) -> dict[str, list[tuple[str, Any]]]:
        by_label: dict[str, list[tuple[str, Any]]] = {}
        for name, fake in self.providers.items():
            for task in fake.tasks.values():
                match = LABEL.search(str(task.body.get("prompt", "")))
                if match:
                    by_label.setdefault(match.group(0), []).append((name, task))
        return by_label

    def _after_a_start(self, moment: float) -> str:
        """Which process started shortly before a moment of the fakes' clock (time.monotonic), if one did."""
        starts = [(moment - at, bot.name) for bot in self.bots for at in bot.started_at if 0 <= moment - at <= 10.0]
        if not starts:
            return ""
        since, name = min(starts)
        return f", {since:.1f} s after {name} was started"

    def _in_down_time(self, record: InteractionRecord) -> bool:
        """Whether it came while the process serving its server's shard was down (or about to be stopped)."""
        down = self.serving(record.guild_id).down
        return any(stopped - ACK_WITHIN <= record.pushed_at <= back for stopped, back in down)

    def _judge(self, logs: dict[str, list[str]], wall: float) -> Outcomes:
        broken: dict[str, Violation] = {}

        def breaks(invariant: str, example: str) -> None:
            broken.setdefault(invariant, Violation(invariant)).examples.append(example)

        tasks = self._tasks()
        states: Counter[str] = Counter()
        delivered = duplicates = 0
        for sent in self.commands():
            job, record = sent.job, sent.record
            where = f"{job.label} ({job.operation} {job.provider}, member{job.member:02d}, at {job.at:.1f} s)"
            if not record.acknowledged:
                states["never acknowledged"] += 1
                continue
            card = self.discord.original(record)
            if card is None or card.loading:
                states["acknowledged, no card"] += 1
                breaks(
                    "every acknowledged command ends in exactly one card",
                    f"{where}: still 'thinking' {self.discord.now() - record.pushed_at:.0f} s after the command",
                )
                continue
            view = read_card(card)
            if view.restarted:
                states["restarted before the job was made"] += 1
                if tasks.get(job.label):
                    breaks("a job the bot says it never made has no provider task", f"{where}: {tasks[job.label]}")
                continue
            if view.final is None:
                states[f"unfinished ({view.status})"] += 1
                breaks(
                    "every acknowledged command ends in exactly one card", f"{where}: card still says {view.status!r}"
                )
                continue
            states[view.final] += 1
            job_id = view.job_id
            if view.offers_cancel:
                breaks("no card still offers Cancel once its job ended", f"{where}: job {job_id} {view.final}")
            others = [
                message
                for message in self.discord.messages(include_ephemeral=False)
                if message.id != card.id
                and not ANNOUNCEMENT.match(message.content)
                and read_card(message).job_id == job_id
            ]
            if others:
                breaks(
                    "every acknowledged command ends in exactly one card",
                    f"{where}: job {job_id} has {len(others) + 1} cards",
                )
            made = tasks.get(job.label, [])
            if len(made) > 1:
                ids = ", ".join(f"{name} {task.task_id}" for name, task in made)
                breaks("at most one provider task per job", f"{where}: job {job_id} made {len(made)} tasks ({ids})")
            if view.final == "cancelled" and view.cancelled_at is not None:
                late = [task for _, task in made if task.created_wall.timestamp() > view.cancelled_at]
                if late:
                    breaks(
                        "no provider task after the card said cancelled",
                        f"{where}: job {job_id} task {late[0].task_id}",
                    )
            told = self._announcements(job_id) if job_id is not None else []
            videos = [message for message in told if READY.search(message.content)]
            if view.final == "succeeded":
                if not videos:
                    breaks("every success is delivered exactly once", f"{where}: job {job_id} never delivered")
                    continue
                delivered += 1
                if len(videos) > 1:
                    duplicates += len(videos) - 1
                    breaks(
                        "every success is delivered exactly once",
                        f"{where}: job {job_id} delivered {len(videos)} times",
                    )
                video = videos[0]
                if not video.content.startswith(f"<@{sent.user.id}>"):
                    breaks("every delivery mentions its owner", f"{where}: job {job_id}: {video.content[:60]!r}")
                ids = {str(task.task_id) for _, task in made}
                tags = {
                    tag for attachment in video.attachments for tag in re.findall(rb"task:([^;]+);", attachment.data)
                }
                own = any(tag.decode() in ids for tag in tags) or any(task_id in video.content for task_id in ids)
                if not own:
                    breaks(
                        "every delivery carries its own video",
                        f"{where}: job {job_id} got {sorted(tags)} not {sorted(ids)}",
                    )
            else:
                if videos:
                    breaks("unsuccessful jobs are never delivered", f"{where}: job {job_id} {view.final} but delivered")
                if view.final != "cancelled" and not view.reason:
                    breaks("unsuccessful jobs say why", f"{where}: job {job_id} {view.final} without a reason")
        acks: list[float] = []
        for sent in self.sent:
            record = sent.record
            accepted = [
                callback for callback in record.callbacks if callback.status is not None and callback.status < 400
            ]
            if accepted:
                acks.append(accepted[0].at - record.pushed_at)
            if self._in_down_time(record):
                continue
            if not accepted:
                breaks(
                    f"every command and click is acknowledged within {ACK_WITHIN:g} s",
                    f"{sent.job.label} {sent.kind}: never",
                )
            elif accepted[0].at - record.pushed_at > ACK_WITHIN:
                breaks(
                    f"every command and click is acknowledged within {ACK_WITHIN:g} s",
                    f"{sent.job.label} {sent.kind}: after {accepted[0].at - record.pushed_at:.1f} s",
                )
        for name, log_lines in logs.items():
            where = f"{name}.log " if self.sharded else ""
            for number, line in enumerate(log_lines):
                if line.startswith("Traceback") and not any(
                    ERROR_ID.search(before) for before in log_lines[max(0, number - 3) : number]
                ):
                    breaks(
                        "no Traceback without an error id",
                        f"{where}log line {number + 1}: {log_lines[number - 1][:160]}",
                    )
        for bot in self.bots:
            for exit_line in bot.unexpected_exits:
                breaks("the bot never exits by itself", f"{bot.name} {exit_line}" if self.sharded else exit_line)
        for name, code in self.sigterm_codes:
            if code != 0:
                breaks("a SIGTERM stops the bot cleanly", f"{name}: exit status {code}")
        twice = polled_within_a_round(task_queries(self.providers), POLL_INTERVAL) if self.sharded else []
        for repeated in twice:
            breaks(
                "no task polled twice within one poll round",
                f"{repeated.provider} task {repeated.task_id}: asked {repeated.second - repeated.first:.2f} s apart"
                f"{self._after_a_start(repeated.second)}",
            )
        table = self._table(states, delivered, duplicates, acks, tasks, wall, twice)
        return Outcomes(table, list(broken.values()))

    def _table(
        self,
        states: Counter[str],
        delivered: int,
        duplicates: int,
        acks: list[float],
        tasks: dict[str, list[tuple[str, Any]]],
        wall: float,
        twice: list[str],
    ) -> list[tuple[str, str]]:
        commands = self.commands()
        carded = max(1, sum(count for state, count in states.items() if state in FINAL_WORDS.values()))
        rows = []
        if self.sharded:
            rows.append(
                (
                    "processes",
                    f"{len(self.bots)} on one PostgreSQL ledger, SHARD_COUNT={SHARD_COUNT}: "
                    + ", ".join(f"{bot.name} ({bot.role.describe()})" for bot in self.bots),
                )
            )
        rows += [
            ("commands sent", f"{len(commands)} ({sum(sent.record.acknowledged for sent in commands)} acknowledged)"),
            *((f"  {state}", str(count)) for state, count in sorted(states.items())),
            ("deliveries", str(delivered)),
            ("duplicate deliveries", str(duplicates)),
            ("Cancel clicks", str(sum(sent.kind == "cancel" for sent in self.sent))),
            (
                "restarts",
                f"{sum(self.stops.values())} ({', '.join(f'{kind} {n}' for kind, n in sorted(self.stops.items()))})",
            ),
            ("tokens revoked early", str(self.revoked)),
            ("provider tasks", f"{sum(len(made) for made in tasks.values())} for {len(tasks)} jobs"),
        ]
        if self.sharded:
            hits = [f"{stop.kind} {stop.process} at {stop.at:.0f} s (down {stop.down:.1f} s)" for stop in self.stopped]
            rows.insert(rows.index(("tokens revoked early", str(self.revoked))), ("  stops", "; ".join(hits)))
        hit = {
            "provider 5xx": sum(self.faults_set[kind] for kind in ("submit_5xx", "poll_5xx")),
            "malformed answers": self.faults_set["poll_malformed"],
            "unanswered creates": self.faults_set["create_unanswered"],
            "late Vidu creates": self.faults_set["vidu_create_late"],
            "Discord 5xx": self.faults_set["discord_5xx"],
        }
        pending = sum(fake.pending_faults() for fake in self.providers.values())
        unused_discord = self.discord.pending_failures()
        rows.append(
            (
                "faults hit",
                ", ".join(f"{name} {count}" for name, count in hit.items())
                + f" (unused at the end: provider {pending}, Discord {unused_discord})",
            )
        )
        for name, fake in self.providers.items():
            submits = fake.route_count(SUBMIT_ROUTES[name]) + (
                fake.route_count("submit_video_edit") if name == "hidream" else 0
            )
            polls = fake.route_count(POLL_ROUTES[name])
            jobs = max(1, len({label for label, made in tasks.items() if any(owner == name for owner, _ in made)}))
            rows.append(
                (
                    f"{name} requests per job",
                    f"{len(fake.requests) / jobs:.1f} (submit {submits / jobs:.2f}, poll {polls / jobs:.1f})",
                )
            )
        if acks:
            ordered = sorted(acks)
            rows.append(("acknowledgement p50 / max", f"{ordered[len(ordered) // 2]:.2f} / {ordered[-1]:.2f} s"))
        if self.sharded:
            rows.append(("polls within one round", str(len(twice))))
        rows.append(("ended jobs", str(carded)))
        rows.append(("wall time", f"{wall:.0f} s"))
        return rows


def task_queries(providers: Mapping[str, FakeProvider]) -> dict[tuple[str, str], list[float]]:
    """When each task's status was asked for, per (provider, task id); a HiDream batch asks for each of its ids."""
    asked: dict[tuple[str, str], list[float]] = {}
    for request in providers["hidream"].requests:
        if request.route == "batch_query" and isinstance(request.json, dict):
            for task_id in request.json.get("task_id_list", []):
                asked.setdefault(("hidream", str(task_id)), []).append(request.at)
        elif request.route == "single_query":
            asked.setdefault(("hidream", str(request.query.get("task_id"))), []).append(request.at)
    for name, route, pattern in (
        ("pixverse", "result", r"/video/result/(\d+)$"),
        ("vidu", "creations", r"/tasks/(\d+)/creations$"),
    ):
        for request in providers[name].requests_for(route):
            match = re.search(pattern, request.path)
            if match is None:
                raise AssertionError(f"a {name} status query without a task id: {request.path}")
            asked.setdefault((name, match.group(1)), []).append(request.at)
    return asked


@dataclass(frozen=True)
class RepeatedPoll:
    """One task asked for twice within one poll round, at two moments of the fake's clock."""

    provider: str
    task_id: str
    first: float
    second: float


def polled_within_a_round(queries: Mapping[tuple[str, str], list[float]], interval: float) -> list[RepeatedPoll]:
    """Queries of one task less than half a poll interval apart: two processes polled it in one round."""
    return [
        RepeatedPoll(name, task_id, earlier, later)
        for (name, task_id), moments in sorted(queries.items())
        for earlier, later in itertools.pairwise(sorted(moments))
        if later - earlier < interval / 2
    ]


@dataclass(frozen=True)
class CardView:
    job_id: int | None
    status: str
    final: str | None
    reason: bool
    offers_cancel: bool
    restarted: bool
    cancelled_at: float | None


def _status(embeds: list[dict[str, Any]]) -> str:
    for embed in embeds[:1]:
        for field_ in embed.get("fields", [])[:1]:
            return str(field_.get("value", ""))
    return ""


def _words(status: str) -> str:
    first = status.splitlines()[0] if status else ""
    match = re.search(r"\*\*(.+?)\*\*", first)
    return match.group(1) if match else first


def read_card(message: FakeMessage) -> CardView:
    """What a member sees on a job card: its job, its state, its buttons."""
    footer = next((str(embed.get("footer", {}).get("text", "")) for embed in message.embeds[:1]), "")
    match = re.fullmatch(r"Job (\d+)", footer)
    status = _status(message.embeds)
    words = _words(status)
    cancelled_at = None
    versions = [*message.history, {"embeds": message.embeds, "at": message.edited_at or message.created_at}]
    for version in versions:
        if _words(_status(version.get("embeds") or [])) == "Cancelled":
            cancelled_at = float(version["at"])
            break
    lines = status.splitlines()
    return CardView(
        job_id=int(match.group(1)) if match else None,
        status=words,
        final=FINAL_WORDS.get(words),
        reason=len(lines) > 2,
        offers_cancel=any(custom.startswith("job:cancel:") for custom in message.custom_ids()),
        restarted=bool(RESTARTED.search(message.content)),
        cancelled_at=cancelled_at,
    )


def render(plan: Plan, outcomes: Outcomes, *, postgres: bool = False) -> Iterator[str]:
    flags = ("--short " if plan.short else "") + ("--postgres " if postgres else "")
    yield f"python -m tests.soak {flags}(SOAK_SEED={plan.seed})"
    width = max(len(name) for name, _ in outcomes.table)
    yield "-" * (width + 50)
    for name, value in outcomes.table:
        yield f"{name:<{width}}  {value}"
    yield "-" * (width + 50)
    if outcomes.ok:
        yield "every invariant held"
        return
    for violation in outcomes.violations:
        yield f"BROKEN: {violation.invariant} ({len(violation.examples)}x)"
        for example in violation.examples[:5]:
            yield f"    {example}"
    yield f"replay: SOAK_SEED={plan.seed} python -m tests.soak {flags}".rstrip()


async def soak(plan: Plan, folder: Path, *, postgres: bool = False) -> Outcomes:
    if not postgres:
        return await Soak(plan, folder).run()
    with running_server() as server:
        url = await server.create_database("soak")
        return await Soak(plan, folder, database_url=url).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="the plan's seed (default: SOAK_SEED, else random)")
    parser.add_argument("--short", action="store_true", help="the CI plan: 40 jobs, one SIGKILL, a fixed seed")
    parser.add_argument("--keep", action="store_true", help="keep the ledger and the bot's log in a folder")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="three bot processes (shard 0, shard 1, no gateway) on a throwaway PostgreSQL server (tests/postgres.py)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else os.environ.get("SOAK_SEED")
    if seed is None:
        seed = 18 if args.short else random.SystemRandom().randrange(1, 10**6)
    try:
        seed = int(seed)
    except ValueError:
        print(f"SOAK_SEED must be a whole number, not {seed!r}.", file=sys.stderr)
        return 2
    plan = make_plan(seed, short=args.short, processes=len(THREE_PROCESSES) if args.postgres else 1)
    print(f"SOAK_SEED={seed}", flush=True)
    print(plan.describe(), flush=True)
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    outcomes = asyncio.run(soak(plan, folder, postgres=args.postgres))
    for line in render(plan, outcomes, postgres=args.postgres):
        print(line)
    if args.keep or not outcomes.ok:
        print(f"ledger and bot log kept in {folder}")
    else:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()
    return 0 if outcomes.ok else 1


if __name__ == "__main__":
    sys.exit(main())

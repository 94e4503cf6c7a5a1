"""Scale-out end to end: three bot processes on one PostgreSQL ledger, one of them SIGKILLed in the middle.

Gateway shard 0, gateway shard 1 and a process without a gateway (SHARD_COUNT=2) share the ledger, the
inputs folder, the fake Discord (two shards, guilds on both) and the three fake providers (whose answers
take a moment on the way back, as over a network). 300 ``/animate`` commands go to the guilds of both
shards, and the shard-1 process is killed while it holds sends or polls and announcements are pending.

The shard-1 process is the one killed because it holds every kind of work: its guilds' commands as well as
sends, polls and announcements; and its shard goes dark with it, so the survivors must finish jobs of guilds
none of them can hear. No command goes to shard 1 after the kill (Discord would not deliver it), and the
kill waits until every shard-1 command has become its job: a command whose image was never read cannot
become a job after a crash (the member is told so; tests/test_intake.py covers it), and this test holds
every command to exactly one job.

Everything is judged from outside: the fakes' tasks and request logs, the fake Discord's messages and
interaction callbacks, and the ledger read through ``bot.store.Store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

from bot.store import Job, JobState, Store
from simulators.fake_discord import FakeDiscord, FakeGuild, FakeMessage, FakeUser, InteractionRecord
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeProvider, FakeVidu, Outcome
from simulators.fake_providers.common import Task
from tests.conftest import image_bytes
from tests.discord_world import free_port
from tests.soak import ANNOUNCEMENT, polled_within_a_round, read_card, task_queries

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"hidream": "hd-scale-key", "pixverse": "pv-scale-key", "vidu": "vd-scale-key"}
PROVIDERS = ("hidream", "pixverse", "vidu")
COMMANDS = 300
#: Commands sent before the kill; the rest go to shard 0 only.
KILL_AFTER = 150
#: Commands not yet made into a job (no card yet) at once: the members' pace.
IN_FLIGHT = 6
MEMBERS = 5
GUILDS_PER_SHARD = 3
POLL_INTERVAL = 0.5
LEASE_SECONDS = 5
CAPS = {"hidream": 2, "pixverse": 3, "vidu": 3}
ACK_WITHIN = 3.0
#: Each answer of a fake provider takes this long on its way back, so that sends and polls are in flight a while.
ANSWER_DELAY = 0.1
#: Covers Vidu's reconcile window (3 minutes) for a send that never reached Vidu before the kill.
SETTLE_WITHIN = 300.0
LABEL = re.compile(r"scale job (\d{3})")
EXPECTED = {"success": JobState.SUCCEEDED, "failed": JobState.FAILED, "moderation": JobState.REJECTED}
LOST_TRACK = "lost track of this job while sending it"


def outcome_of(index: int) -> str:
    return "failed" if index % 20 == 7 else "moderation" if index % 20 == 13 else "success"


@dataclass
class Command:
    index: int
    provider: str
    guild: FakeGuild
    member: FakeUser
    record: InteractionRecord

    @property
    def label(self) -> str:
        return f"scale job {self.index:03d}"


@dataclass
class BotProcess:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    health_url: str

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def until_healthy(self, within: float = 60.0) -> None:
        async with aiohttp.ClientSession() as session, asyncio.timeout(within):
            while True:
                assert self.process.returncode is None, f"{self.name} exited:\n{self.log}"
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.health_url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)


class World:
    """The fakes, the members and guilds, and the commands sent so far."""

    def __init__(self, discord_fake: FakeDiscord, providers: dict[str, FakeProvider]) -> None:
        self.discord = discord_fake
        self.providers = providers
        self.members = [discord_fake.add_user(f"member{number}") for number in range(MEMBERS)]
        self.guilds = {
            shard: [
                discord_fake.add_guild(f"Shard {shard} guild {number}", members=self.members, shard=shard)
                for number in range(GUILDS_PER_SHARD)
            ]
            for shard in (0, 1)
        }
        self.image = image_bytes(480, 270)
        self.commands: list[Command] = []

    def env(self, database_url: str, inputs: Path) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.endswith(("_API_KEY", "_TOKEN", "_URL"))}
        env.update(
            PYTHONPATH=str(ROOT),
            FAKE_DISCORD_API=self.discord.api_url,
            FAKE_DISCORD_GATEWAY=self.discord.gateway_url,
            DISCORD_TOKEN=self.discord.token,
            DISCORD_GUILD_IDS=",".join(str(guild.id) for shard in (0, 1) for guild in self.guilds[shard]),
            DATABASE_URL=database_url,
            INPUTS_DIR=str(inputs),
            SHARD_COUNT="2",
            LEASE_SECONDS=str(LEASE_SECONDS),
            POLL_INTERVAL_SECONDS=str(POLL_INTERVAL),
            PROGRESS_EDIT_SECONDS="1",
            HTTP_TIMEOUT_SECONDS="5",
            MAX_ACTIVE_JOBS_PER_USER="0",
            HIDREAM_SUBMITS_PER_MINUTE="0",
            HIDREAM_STYLIZE_SUBMITS_PER_MINUTE="0",
            HIDREAM_MAX_RUNNING=str(CAPS["hidream"]),
            PIXVERSE_MAX_RUNNING=str(CAPS["pixverse"]),
            VIDU_MAX_RUNNING=str(CAPS["vidu"]),
            HEALTH_HOST="127.0.0.1",
            LOG_LEVEL="INFO",
        )
        for name, fake in self.providers.items():
            env[f"{name.upper()}_API_KEY"] = KEYS[name]
            env[f"{name.upper()}_BASE_URL"] = fake.base_url
        return env

    def without_job(self) -> int:
        """Commands whose card does not show a job yet."""
        return sum(1 for command in self.commands if self.job_id(command) is None)

    def job_id(self, command: Command) -> int | None:
        card = self.discord.original(command.record)
        return None if card is None or card.loading else read_card(card).job_id

    async def send(self, index: int, shards: tuple[int, ...]) -> None:
        guilds = [guild for shard in shards for guild in self.guilds[shard]]
        guild = guilds[index % len(guilds)]
        member = self.members[index % MEMBERS]
        provider = PROVIDERS[index % len(PROVIDERS)]
        attachment = self.discord.add_attachment("cat.png", self.image, "image/png")
        payload = self.discord.slash(
            "animate",
            subcommand=provider,
            options={"prompt": f"scale job {index:03d}: a cat waves"},
            attachments={"image": attachment},
            user=member,
            channel=guild.channels[0],
        )
        record = await self.discord.push_interaction(payload, timeout=30)
        self.commands.append(Command(index, provider, guild, member, record))

    def tasks_by_label(self) -> dict[str, list[tuple[str, Task]]]:
        found: dict[str, list[tuple[str, Task]]] = defaultdict(list)
        for name, fake in self.providers.items():
            for task in fake.tasks.values():
                match = LABEL.search(str(task.body.get("prompt", "")))
                if match:
                    found[match.group(0)].append((name, task))
        return found


async def spawn(name: str, env: dict[str, str], shard_ids: str, folder: Path, log: IO[bytes]) -> BotProcess:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bot_child",
        cwd=folder,
        env={**env, "SHARD_IDS": shard_ids, "HEALTH_PORT": str(port)},
        stdout=log,
        stderr=log,
    )
    return BotProcess(name, process, folder / f"{name}.log", f"http://127.0.0.1:{port}/healthz")


async def until(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    try:
        async with asyncio.timeout(within):
            while not await condition():  # noqa: ASYNC110 - the ledger is another process's
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {within:g} s: {what}") from None


async def all_jobs(store: Store, members: Iterable[FakeUser]) -> list[Job]:
    jobs = [job for member in members for job in await store.jobs_of_user(member.id, limit=COMMANDS * 2)]
    return sorted(jobs, key=lambda job: job.id)


def peak_alive(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (one that ends as another starts does not overlap it)."""
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    alive = peak = 0
    for _, step in moments:
        alive += step
        peak = max(peak, alive)
    return peak


def monotonic_of(task: Task, moment: datetime) -> float:
    """A ledger time on the fake's clock, through the task's own pair of readings."""
    return task.created_at + (moment - task.created_wall).total_seconds()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    def rule(body: dict[str, Any]) -> Outcome | None:
        match = LABEL.search(str(body.get("prompt", "")))
        return Outcome(outcome_of(int(match.group(1)))) if match else None

    timing: dict[str, Any] = {"queue_seconds": 0.2, "run_seconds": 0.8, "outcome_rule": rule, "tag_media": True}
    async with (
        FakeDiscord(shard_count=2) as discord_fake,
        FakeHiDream(api_key=KEYS["hidream"], **timing) as hidream,
        FakePixVerse(api_key=KEYS["pixverse"], max_concurrent=CAPS["pixverse"], **timing) as pixverse,
        FakeVidu(api_key=KEYS["vidu"], **timing) as vidu,
    ):
        providers: dict[str, FakeProvider] = {"hidream": hidream, "pixverse": pixverse, "vidu": vidu}
        for fake in providers.values():
            fake.answer_delay = ANSWER_DELAY
        yield World(discord_fake, providers)


async def test_three_processes_share_the_work_and_survive_a_sigkill(
    world: World, postgres_url: str, tmp_path: Path
) -> None:
    discord_fake = world.discord
    env = world.env(postgres_url, tmp_path / "inputs")
    store = await Store.open(postgres_url, pool_size=2)
    processes: list[BotProcess] = []
    with contextlib.ExitStack() as logs:
        try:
            for name, shard_ids in (("shard0", "0"), ("shard1", "1"), ("gatewayless", "none")):
                log = logs.enter_context((tmp_path / f"{name}.log").open("wb"))
                processes.append(await spawn(name, env, shard_ids, tmp_path, log))
            shard0, shard1, gatewayless = processes
            await asyncio.gather(*(process.until_healthy() for process in processes))
            await discord_fake.wait_until(lambda: len(discord_fake.syncs) >= 2 * GUILDS_PER_SHARD, timeout=30)
            assert set(discord_fake.sessions) == {0, 1}

            async def room_for_a_command() -> bool:
                return world.without_job() < IN_FLIGHT

            for index in range(KILL_AFTER):
                await until(room_for_a_command, 60, "room for one more command")
                await world.send(index, shards=(0, 1))

            async def shard1_commands_made_their_jobs() -> bool:
                return all(
                    world.job_id(command) is not None for command in world.commands if command.guild in world.guilds[1]
                )

            await until(shard1_commands_made_their_jobs, 60, "every shard-1 command made its job")
            held, killed_at = await kill_holding_work(shard1, store, world)

            for index in range(KILL_AFTER, COMMANDS):
                await until(room_for_a_command, 60, "room for one more command")
                await world.send(index, shards=(0,))

            unsettled: list[Job] = []

            async def settled() -> bool:
                jobs = await all_jobs(store, world.members)
                unsettled[:] = [job for job in jobs if not (job.state.finished and job.delivered)]
                return len(jobs) >= COMMANDS and not unsettled

            try:
                await until(settled, SETTLE_WITHIN, "every job ended and was announced")
            except AssertionError as exc:
                left = Counter(
                    f"{job.provider} {job.state.value}{'' if job.delivered else ' unannounced'}" for job in unsettled
                )
                raise AssertionError(f"{exc}; left: {dict(left)}, e.g. {unsettled[:3]}") from None
            for survivor in (shard0, gatewayless):
                survivor.process.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(survivor.process.wait(), 90) for survivor in (shard0, gatewayless)]
            jobs = await all_jobs(store, world.members)
            events = {job.id: await store.events(job.id) for job in jobs}
        finally:
            for process in processes:
                if process.process.returncode is None:
                    process.process.kill()
                    await process.process.wait()
            await store.close()

    # The survivors stop cleanly on SIGTERM.
    assert codes == [0, 0], [survivor.log[-3000:] for survivor in (shard0, gatewayless)]
    for survivor in (shard0, gatewayless):
        assert "Traceback" not in survivor.log, survivor.log

    # Every command was acknowledged within 3 s and made exactly one job.
    waits = {}
    for command in world.commands:
        callback = first_accepted(command)
        waits[command.label] = None if callback is None else callback.at - command.record.pushed_at
    late = {label: waited for label, waited in waits.items() if waited is None or waited > ACK_WITHIN}
    assert not late, late
    assert len(world.commands) == COMMANDS
    job_of = {command.label: world.job_id(command) for command in world.commands}
    assert None not in job_of.values()
    assert len(set(job_of.values())) == COMMANDS
    by_id = {job.id: job for job in jobs}
    assert set(by_id) == set(job_of.values())
    lost_track = {job.id for job in held if job.provider == "hidream" and job.state is JobState.SUBMITTING}
    tasks = world.tasks_by_label()
    announcements: dict[int, list[FakeMessage]] = defaultdict(list)
    for message in discord_fake.messages(include_ephemeral=False):
        if match := ANNOUNCEMENT.match(message.content):
            announcements[int(match.group(2))].append(message)
    stale_cards: list[tuple[int, str, str]] = []
    for command in world.commands:
        job = by_id[job_of[command.label]]
        card = discord_fake.original(command.record)
        assert card is not None
        assert (job.provider, job.user_id, job.guild_id, job.message_id) == (
            command.provider,
            command.member.id,
            command.guild.id,
            card.id,
        )
        # One final state: the one the provider gave (a send HiDream cannot look up ends failed), on the card too.
        finals = [event for event in events[job.id] if event.to_state.finished and event.from_state != event.to_state]
        assert len(finals) == 1, (command.label, events[job.id])
        made = tasks.get(command.label, [])
        if job.id in lost_track:
            assert job.state is JobState.FAILED
            assert LOST_TRACK in (job.error_reason or ""), job.error_reason
            assert len(made) <= 1
        else:
            assert job.state is EXPECTED[outcome_of(command.index)], (command.label, job.state, job.error_reason)
            assert [(name, str(task.task_id)) for name, task in made] == [(job.provider, job.task_id)], (
                command.label,
                made,
            )
        shown = read_card(card)
        if shown.final != job.state.value.replace("_", " "):
            stale_cards.append((job.id, job.state.value, shown.status))
        [announcement] = announcements[job.id]
        assert announcement.content.startswith(f"<@{command.member.id}>")
        if job.state is JobState.SUCCEEDED:
            tags = {
                tag for attachment in announcement.attachments for tag in re.findall(rb"task:([^;]+);", attachment.data)
            }
            assert tags == {str(job.task_id).encode()}, (command.label, tags, job.task_id)

    # No task was asked for twice in one round: two queries of one task are at least half a poll interval apart.
    assert polled_within_a_round(task_queries(world.providers), POLL_INTERVAL) == []

    # The caps held across the processes: tasks alive at a provider (created, not yet reported ended) never
    # outnumbered the cap, and the cap was reached (so it was what held them back).
    peaks: dict[str, int] = {}
    job_by_label = {command.label: by_id[job_of[command.label]] for command in world.commands}
    for name in CAPS:
        intervals = []
        for label, made in tasks.items():
            for owner, task in made:
                if owner != name:
                    continue
                job = job_by_label[label]
                end = task.reported_final_at
                if end is None:
                    assert job.finished_at is not None
                    end = monotonic_of(task, job.finished_at)
                intervals.append((task.created_at, end))
        peaks[name] = peak_alive(intervals)
    assert peaks == CAPS, peaks

    # The killed process's work was taken over: every job it held at the kill ended later, announced.
    assert held, "the killed process held no send or poll at the kill"
    for job in held:
        after = by_id[job.id]
        assert after.state.finished, after
        assert after.delivered, after
        [final] = [event for event in events[job.id] if event.to_state.finished and event.from_state != event.to_state]
        assert final.at > killed_at, (job.id, final, killed_at)
    acks = sorted(waited for waited in waits.values() if waited is not None)
    print(
        f"\nheld at the kill: {[(job.id, job.provider, job.state.value) for job in held]}; lost track: {lost_track};"
        f" peaks {peaks}; acknowledgement p50 {acks[len(acks) // 2]:.2f} s, max {acks[-1]:.2f} s;"
        f" states {Counter(job.state.value for job in jobs)}"
    )
    # A progress edit drawn before another process ended the job may land after that process drew the final
    # card; the presenter reads the job again after each edit and draws the end once more.
    assert stale_cards == [], f"cards left showing an older state: (job, ledger, card) {stale_cards}"


def first_accepted(command: Command) -> Any:
    accepted = [
        callback for callback in command.record.callbacks if callback.status is not None and callback.status < 400
    ]
    return accepted[0] if accepted else None


async def kill_holding_work(victim: BotProcess, store: Store, world: World) -> tuple[list[Job], datetime]:
    """SIGKILL ``victim`` at a moment it holds sends or polls and some announcement is pending.

    The process is frozen (SIGSTOP) while the ledger is read, so what it holds cannot change before the kill.
    """
    pid = victim.process.pid
    async with asyncio.timeout(60):
        while True:
            victim.process.send_signal(signal.SIGSTOP)
            jobs = await all_jobs(store, world.members)
            held = [
                job
                for job in jobs
                if job.lease_owner is not None
                and f":{pid}:" in job.lease_owner
                and job.state in (JobState.SUBMITTING, JobState.RUNNING)
            ]
            announcing = [job for job in jobs if job.state.finished and not job.delivered]
            if held and announcing:
                victim.process.kill()
                killed_at = store.now()
                await victim.process.wait()
                return held, killed_at
            victim.process.send_signal(signal.SIGCONT)
            await asyncio.sleep(0.05)

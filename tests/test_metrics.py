"""Prometheus metrics: route shapes, the provider clients' request observer, the ledger gauges, and
``/metrics`` scraped from the running bot with prometheus-client's own parser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.metrics import Metrics, route_kind
from bot.store import JobState, NewJob, Store
from providers import ProviderError
from providers.http import EndpointKind
from simulators.fake_providers import FakeVidu, Outcome
from tests.conftest import VIDU_KEY, vidu_client
from tests.discord_world import KEYS, World, world

__all__ = ["world"]

# --- route shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/api/v10/channels/123456789012345678/messages", "/channels/{id}/messages"),
        ("/api/v10/channels/1/messages/2", "/channels/{id}/messages/{id}"),
        (
            "/api/v10/webhooks/1234/aW50ZXJhY3Rpb246MTIzNDU2Nzg5/messages/@original",
            "/webhooks/{id}/{token}/messages/@original",
        ),
        ("/api/v10/webhooks/1234/lowercasetoken", "/webhooks/{id}/{token}"),
        ("/api/v10/interactions/98765/secret-token-abc/callback", "/interactions/{id}/{token}/callback"),
        ("/api/v10/applications/55/guilds/66/commands", "/applications/{id}/guilds/{id}/commands"),
        (
            "/api/v10/channels/1/messages/2/reactions/%F0%9F%91%8D/@me",
            "/channels/{id}/messages/{id}/reactions/{value}/@me",
        ),
        ("/api/v10/users/@me", "/users/@me"),
        ("/api/v10/oauth2/applications/@me", "/oauth2/applications/@me"),
        ("/api/v10/gateway/bot", "/gateway/bot"),
        ("/api/channels/7/messages", "/channels/{id}/messages"),
    ],
)
def test_route_shapes_replace_ids_and_tokens(path: str, shape: str) -> None:
    assert route_kind(path) == shape


@pytest.mark.parametrize("path", ["/", "/attachments/1/2/cat.png", "/apiary/1"])
def test_paths_outside_the_rest_api_have_no_route_shape(path: str) -> None:
    assert route_kind(path) is None


# --- the provider clients' observer ---------------------------------------------------------------


async def test_each_provider_request_is_observed_with_its_kind_outcome_and_time(session: aiohttp.ClientSession) -> None:
    seen: list[tuple[str, EndpointKind, str, float]] = []
    async with FakeVidu(api_key=VIDU_KEY) as fake:
        client = vidu_client(session, fake, observer=lambda *call: seen.append(call))
        fake.fail("credits", "server_error", times=1)
        await client.credits()
        fake.fail("creations", "unauthorized")
        with pytest.raises(ProviderError):
            await client.creations("no-such-task")
        await client.list_tasks()

    assert [(provider, kind, outcome) for provider, kind, outcome, _ in seen] == [
        ("Vidu", EndpointKind.CHECK, "unavailable"),
        ("Vidu", EndpointKind.CHECK, "ok"),
        ("Vidu", EndpointKind.POLL, "credentials"),
        ("Vidu", EndpointKind.LIST, "ok"),
    ]
    assert all(seconds >= 0 for *_, seconds in seen)


async def test_metrics_label_provider_requests_with_the_short_name(session: aiohttp.ClientSession) -> None:
    metrics = Metrics()
    async with FakeVidu(api_key=VIDU_KEY) as fake:
        client = vidu_client(session, fake, observer=metrics.provider_observer("vidu"))
        await client.credits()
    text = metrics.registry.get_sample_value(
        "animate_provider_requests_total", {"provider": "vidu", "endpoint": "check", "outcome": "ok"}
    )
    assert text == 1
    count = metrics.registry.get_sample_value(
        "animate_provider_request_duration_seconds_count", {"provider": "vidu", "endpoint": "check"}
    )
    assert count == 1


# --- the ledger gauges ------------------------------------------------------------------------------


@pytest.fixture
async def ledger_store(ledger: Path | str) -> AsyncIterator[Store]:
    store = await Store.open(ledger)
    try:
        yield store
    finally:
        await store.close()


def new_job(key: str, provider: str) -> NewJob:
    return NewJob(
        channel_id=2002,
        user_id=3003,
        provider=provider,
        operation="image_to_video",
        params={"prompt": "a wave"},
        media={"path": "/var/media/in.png", "kind": "image", "format": "png", "size": 1},
        guild_id=1001,
        key=key,
    )


async def test_unfinished_counts_are_read_from_the_ledger_by_provider_and_state(ledger_store: Store) -> None:
    store = ledger_store
    assert await store.unfinished_counts() == {}
    jobs = [await store.create_job(new_job(f"k{index}", provider)) for index, provider in enumerate("aabbbc")]
    await store.transition(jobs[0].id, JobState.SUBMITTING)
    await store.transition(jobs[2].id, JobState.SUBMITTING)
    await store.transition(jobs[2].id, JobState.RUNNING)
    await store.transition(jobs[3].id, JobState.CANCELLED)
    await store.transition(jobs[5].id, JobState.SUBMITTING)
    await store.transition(jobs[5].id, JobState.RUNNING)
    await store.transition(jobs[5].id, JobState.SUCCEEDED)

    assert await store.unfinished_counts() == {
        ("a", "submitting"): 1,
        ("a", "queued"): 1,
        ("b", "running"): 1,
        ("b", "queued"): 1,
    }

    metrics = Metrics()
    metrics.track(["a", "b", "c"])
    families = {
        family.name: family for family in text_string_to_metric_families((await metrics.render(store)).decode())
    }
    assert {s.labels["provider"]: s.value for s in families["animate_jobs_queued"].samples} == {"a": 1, "b": 1, "c": 0}
    assert {s.labels["provider"]: s.value for s in families["animate_jobs_running"].samples} == {"a": 1, "b": 1, "c": 0}


# --- end to end -------------------------------------------------------------------------------------


async def scrape(world: World) -> tuple[str, list[Sample]]:
    async with world.session.get(f"http://127.0.0.1:{world.health_port}/metrics") as response:
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        text = await response.text()
    return content_type, [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(key) == wanted for key, wanted in labels.items())
    )


@pytest.mark.world(settings={"hidream_max_running": 1})
async def test_metrics_count_jobs_requests_refusals_credits_and_discord_answers(world: World) -> None:
    world.providers["vidu"].outcomes.append(Outcome("failed"))
    # PixVerse's result endpoint fails one whole poll (three tries): a refused poll, then the job goes on.
    world.providers["pixverse"].fail("result", "server_error", times=3)
    # The first announcement (a followup through the interaction's token) runs into a 429.
    world.discord.fail_requests("POST", r"^/webhooks/\d+/[^/]+$", status=429)
    async with world.running():
        done = {
            provider: await world.finished((await world.job_for(await world.animate(provider))).id)
            for provider in ("hidream", "pixverse", "vidu")
        }
        assert {provider: job.state for provider, job in done.items()} == {
            "hidream": JobState.SUCCEEDED,
            "pixverse": JobState.SUCCEEDED,
            "vidu": JobState.FAILED,
        }
        # Two HiDream jobs that never end, with one allowed at once: one runs, one waits.
        world.providers["hidream"].outcomes.extend([Outcome("stall"), Outcome("stall")])
        running = await world.job_for(await world.animate("hidream"))
        waiting = await world.job_for(await world.animate("hidream"))
        await world.reaches(running.id, lambda job: job.state is JobState.RUNNING)
        assert (await world.store.get_job(waiting.id)).state is JobState.QUEUED

        content_type, samples = await scrape(world)

    assert content_type == CONTENT_TYPE_LATEST
    for provider in ("hidream", "pixverse", "vidu"):
        assert value(samples, "animate_jobs_created_total", provider=provider) == (3 if provider == "hidream" else 1)
    assert value(samples, "animate_jobs_finished_total", provider="hidream", state="succeeded") == 1
    assert value(samples, "animate_jobs_finished_total", provider="pixverse", state="succeeded") == 1
    assert value(samples, "animate_jobs_finished_total", provider="vidu", state="failed") == 1
    assert value(samples, "animate_jobs_finished_total") == 3

    assert value(samples, "animate_jobs_running", provider="hidream") == 1
    assert value(samples, "animate_jobs_queued", provider="hidream") == 1
    assert value(samples, "animate_jobs_running", provider="vidu") == 0
    assert value(samples, "animate_jobs_queued", provider="pixverse") == 0

    for provider, creates in {"hidream": 2, "pixverse": 1, "vidu": 1}.items():
        assert (
            value(samples, "animate_provider_requests_total", provider=provider, endpoint="create", outcome="ok")
            == creates
        )
        assert value(samples, "animate_provider_requests_total", provider=provider, endpoint="poll", outcome="ok") > 0
        assert value(samples, "animate_provider_request_duration_seconds_count", provider=provider) > 0
    assert value(samples, "animate_provider_requests_total", provider="pixverse", endpoint="upload", outcome="ok") == 1
    assert value(samples, "animate_provider_requests_total", provider="pixverse", outcome="unavailable") == 3
    assert (
        value(samples, "animate_provider_refusals_total", provider="pixverse", endpoint="poll", kind="unavailable") == 1
    )
    assert value(samples, "animate_provider_refusals_total") == 1

    # Only PixVerse and Vidu report credits, and the Vidu job failed.
    pixverse_credits = done["pixverse"].credits
    assert pixverse_credits
    assert value(samples, "animate_credits_spent_total", provider="pixverse") == pixverse_credits
    assert value(samples, "animate_credits_spent_total", provider="vidu") == 0
    assert value(samples, "animate_credits_spent_total", provider="hidream") == 0

    assert value(samples, "animate_announce_delay_seconds_count") == 3
    assert value(samples, "animate_announce_delay_seconds_count", provider="vidu") == 1

    sends = "/webhooks/{id}/{token}"
    assert value(samples, "animate_discord_requests_total", method="POST", route=sends, status="429") == 1
    assert value(samples, "animate_discord_requests_total", method="POST", route=sends, status="200") >= 3
    assert value(samples, "animate_discord_requests_total", route="/interactions/{id}/{token}/callback") >= 5
    assert value(samples, "animate_discord_rate_limited_total", route=sends, scope="user") == 1
    assert value(samples, "animate_discord_invalid_requests_total", status="429") == 1
    assert len(world.discord.rate_limited) == 1

    # Bounded labels: no token, key or id of any kind.
    secrets = [world.discord.token, *KEYS.values()]
    secrets += [record.token for record in world.discord.interactions.values()]
    ids = {str(world.discord.guild.id), str(world.discord.user.id), str(world.discord.channel.id)}
    ids |= {str(job.id) for job in done.values()} | {str(job.message_id) for job in done.values()}
    ids |= {str(record_id) for record_id in world.discord.interactions}
    for sample in samples:
        for label in sample.labels.values():
            assert not any(secret in label for secret in secrets), sample
            assert label not in ids, sample
            assert not re.search(r"\d{5,}", label), sample

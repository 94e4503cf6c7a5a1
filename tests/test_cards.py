"""How a job looks on Discord: the card, its buttons, the estimate and the announcement."""

from __future__ import annotations

import dataclasses
import io
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from bot.jobs.inputs import THUMBNAIL_SIDE, InputStore
from bot.store import Job, JobState, NewJob, Store
from bot.ui import cards
from providers.media import ImageFormat, PreparedImage

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
async def job(tmp_path: Path) -> Job:
    store = await Store.open(tmp_path / "bot.db", now=lambda: NOW - timedelta(minutes=2))
    try:
        return await store.create_job(
            NewJob(
                channel_id=1,
                user_id=7,
                provider="pixverse",
                operation="image_to_video",
                model="v5",
                params={"prompt": "a cat waves", "duration": 8, "quality": "720p", "seed": 5},
                media={"file": "k.png", "kind": "image", "thumbnail": "k.thumb.jpg", "thumbnail_size": 9000},
            )
        )
    finally:
        await store.close()


def test_progress_bar() -> None:
    assert cards.progress_bar(0) == "▱" * 12 + " 0%"
    assert cards.progress_bar(0.5) == "▰" * 6 + "▱" * 6 + " 50%"
    assert cards.progress_bar(1.2) == "▰" * 12 + " 100%"


def test_a_queued_card_shows_its_place_in_line(job: Job) -> None:
    queued = dataclasses.replace(job, queue_position=3)
    embed = cards.card(queued, cards.Estimate(None), thumbnail=True)
    status = embed.fields[0].value
    assert embed.title == "PixVerse v5 · image to video"
    assert embed.description == "a cat waves"
    assert "Waiting for its turn" in status
    assert "Number 3 in line" in status
    assert {field.name: field.value for field in embed.fields[1:]} == {"duration": "8", "quality": "720p", "seed": "5"}
    assert embed.thumbnail.url == "attachment://input.jpg"
    assert embed.footer.text == f"Job {job.id}"


def test_a_running_card_has_a_bar_and_an_estimate_from_progress(job: Job) -> None:
    running = dataclasses.replace(job, state=JobState.RUNNING, progress=0.25, started_at=NOW - timedelta(seconds=60))
    eta = cards.estimate(running, None, NOW)
    assert eta.finish_at == NOW + timedelta(seconds=180)
    status = cards.card(running, eta, thumbnail=False).fields[0].value
    assert cards.progress_bar(0.25) in status
    assert f"<t:{int((NOW + timedelta(seconds=180)).timestamp())}:R>" in status


def test_without_progress_the_estimate_comes_from_earlier_jobs(job: Job) -> None:
    running = dataclasses.replace(job, state=JobState.RUNNING, accepted_at=NOW - timedelta(seconds=30))
    assert cards.estimate(running, 90.0, NOW).finish_at == NOW + timedelta(seconds=60)
    assert cards.estimate(running, 20.0, NOW).finish_at == NOW - timedelta(seconds=10)
    assert cards.estimate(running, None, NOW).finish_at is None


def status_at(job: Job, median_seconds: float | None, now: datetime) -> str:
    return str(cards.card(job, cards.estimate(job, median_seconds, now), thumbnail=False).fields[0].value)


@pytest.mark.parametrize(
    ("seconds_in", "words"),
    [
        (0, "About 6 min left"),
        (29, "About 6 min left"),
        (31, "About 5 min left"),
        (270, "About 1 min left"),
        (271, "Less than a minute left"),
        (329, "Less than a minute left"),
        (330, "Taking longer than usual"),
        (3000, "Taking longer than usual"),
    ],
)
def test_without_a_percentage_the_card_counts_down_the_minutes_earlier_jobs_took(
    job: Job, seconds_in: int, words: str
) -> None:
    accepted = NOW - timedelta(seconds=seconds_in)
    running = dataclasses.replace(job, state=JobState.RUNNING, accepted_at=accepted)
    status = status_at(running, 330.0, NOW)
    assert words in status
    assert "%" not in status
    assert cards.progress_bar(0) not in status
    assert "Expected" not in status


def test_without_a_percentage_or_earlier_jobs_the_card_says_no_time(job: Job) -> None:
    running = dataclasses.replace(job, state=JobState.RUNNING, accepted_at=NOW - timedelta(seconds=30))
    status = status_at(running, None, NOW)
    assert "Generating" in status
    assert "left" not in status
    assert "longer" not in status
    assert "%" not in status


def test_the_providers_percentage_wins_over_earlier_jobs(job: Job) -> None:
    running = dataclasses.replace(
        job,
        state=JobState.RUNNING,
        progress=0.25,
        accepted_at=NOW - timedelta(seconds=60),
        started_at=NOW - timedelta(seconds=60),
    )
    status = status_at(running, 330.0, NOW)
    assert cards.progress_bar(0.25) in status
    assert f"Expected <t:{int((NOW + timedelta(seconds=180)).timestamp())}:R>" in status
    assert "left" not in status


def test_an_estimate_from_progress_holds_still_between_the_providers_answers(job: Job) -> None:
    # 25 % after 60 s, reported a minute ago: the job should end 180 s after that report, whenever asked.
    reported = NOW - timedelta(seconds=60)
    running = dataclasses.replace(
        job, state=JobState.RUNNING, progress=0.25, started_at=reported - timedelta(seconds=60), progress_at=reported
    )
    first = cards.estimate(running, None, NOW)
    later = cards.estimate(running, None, NOW + timedelta(seconds=50))
    assert first.finish_at == later.finish_at == reported + timedelta(seconds=180)
    assert cards.signature(running, first) == cards.signature(running, later)


def test_the_signature_changes_once_a_minute_while_counting_down(job: Job) -> None:
    running = dataclasses.replace(job, state=JobState.RUNNING, accepted_at=NOW)
    signatures = [
        cards.signature(running, cards.estimate(running, 600.0, NOW + timedelta(seconds=s))) for s in range(0, 600, 10)
    ]
    changes = sum(1 for before, after in itertools.pairwise(signatures) if before != after)
    # From 10 min left down to under a minute: one change a minute and no more.
    assert changes == 10


def test_a_send_being_checked_says_so_on_the_card(job: Job) -> None:
    sending = dataclasses.replace(job, state=JobState.SUBMITTING)
    checking = dataclasses.replace(sending, provider_status="checking whether Vidu received it")
    status = cards.card(checking, cards.Estimate(None), thumbnail=False).fields[0].value
    assert "checking whether Vidu received it before sending again" in status
    assert cards.signature(sending, cards.Estimate(None)) != cards.signature(checking, cards.Estimate(None))


def test_only_visible_changes_change_the_signature(job: Job) -> None:
    running = dataclasses.replace(job, state=JobState.RUNNING, progress=0.40)
    same = dataclasses.replace(running, progress=0.41, updated_at=NOW)
    moved = dataclasses.replace(running, progress=0.60)
    none = cards.Estimate(None)
    assert cards.signature(running, none) == cards.signature(same, none)
    assert cards.signature(running, none) != cards.signature(moved, none)


@pytest.mark.parametrize(
    ("state", "labels"),
    [
        (JobState.QUEUED, ["Cancel"]),
        (JobState.RUNNING, ["Cancel"]),
        (JobState.SUCCEEDED, ["Open", "Reroll", "Stylize"]),
        (JobState.FAILED, ["Retry"]),
        (JobState.TIMED_OUT, ["Retry"]),
        (JobState.REJECTED, ["Retry"]),
    ],
)
def test_buttons_follow_the_state(job: Job, state: JobState, labels: list[str]) -> None:
    shown = dataclasses.replace(job, state=state, video_url="https://media/v.mp4")
    view = cards.buttons(shown, can_stylize=True)
    assert [item.item.label if hasattr(item, "item") else item.label for item in view.children] == labels
    ids = [getattr(item, "custom_id", None) for item in view.children]
    assert all(custom_id is None or custom_id.endswith(f":{job.id}") for custom_id in ids)


def test_announcements_mention_the_user_and_say_what_to_do(job: Job) -> None:
    done = dataclasses.replace(job, state=JobState.SUCCEEDED, video_url="https://media/v.mp4")
    assert cards.announcement(done, linked=False) == f"<@7> your video from job {job.id} is ready."
    linked = cards.announcement(done, linked=True)
    assert "https://media/v.mp4" in linked
    assert "expire" in linked
    failed = dataclasses.replace(job, state=JobState.FAILED, error_reason="PixVerse could not generate this video.")
    text = cards.announcement(failed, linked=False)
    assert text.startswith("<@7> job")
    assert "PixVerse could not generate this video." in text
    assert "Retry" in text


def test_a_video_link_too_long_for_a_button_goes_into_the_text(job: Job) -> None:
    short = dataclasses.replace(job, state=JobState.SUCCEEDED, video_url="https://media/v.mp4")
    assert cards.card_text(short) is None
    long_url = "https://media/v.mp4?Signature=" + "s" * 500
    long = dataclasses.replace(short, video_url=long_url)
    labels = [
        item.item.label if hasattr(item, "item") else item.label
        for item in cards.buttons(long, can_stylize=False).children
    ]
    assert labels == ["Reroll"]
    text = cards.card_text(long)
    assert text is not None
    assert long_url in text


def test_an_unfetched_video_is_not_called_too_large(job: Job) -> None:
    done = dataclasses.replace(job, state=JobState.SUCCEEDED, video_url="https://media/v.mp4")
    text = cards.announcement(done, linked=False, unfetched=True, can_retry=True)
    assert "could not be fetched" in text
    assert "too large" not in text
    assert "https://media/v.mp4" not in text
    assert "Retry" in text
    assert "Retry" not in cards.announcement(done, linked=False, unfetched=True, can_retry=False)


def test_saving_an_image_input_makes_a_small_jpeg_thumbnail_next_to_it(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (1280, 640), (0, 0, 0, 0)).save(buffer, "PNG")
    inputs = InputStore(tmp_path)
    media = inputs.save("key1", PreparedImage(buffer.getvalue(), ImageFormat.PNG, 1280, 640))

    assert media["thumbnail"] == "key1.thumb.jpg"
    data = inputs.load_thumbnail(media)
    assert data is not None
    assert media["thumbnail_size"] == len(data)
    with Image.open(io.BytesIO(data)) as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("JPEG", (THUMBNAIL_SIDE, THUMBNAIL_SIDE // 2))
        red, green, blue = thumbnail.convert("RGB").getpixel((10, 10))
        assert min(red, green, blue) > 240


def test_an_input_without_a_thumbnail_has_none(tmp_path: Path) -> None:
    inputs = InputStore(tmp_path)
    (tmp_path / "old.png").write_bytes(b"not read")
    assert inputs.load_thumbnail({"file": "old.png", "kind": "image"}) is None
    assert inputs.load_thumbnail({"file": "old.png", "kind": "image", "thumbnail": "gone.jpg"}) is None
    assert inputs.kept({"file": "old.png", "kind": "image"})
    assert not inputs.kept({"file": "pruned.png", "kind": "image"})

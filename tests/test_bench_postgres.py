"""The PostgreSQL benchmark's definitions of a duplicate poll and of a takeover (tests/bench_postgres.py)."""

from __future__ import annotations

import math

from tests.bench_postgres import PollLog


def test_a_task_asked_for_by_two_processes_within_the_shortest_gap_is_a_duplicate() -> None:
    log = PollLog(min_gap=5.0)
    log.polled("t1", 100.0, "c1")
    log.polled("t1", 104.0, "c2")
    log.polled("t2", 100.0, "c1")
    log.polled("t2", 100.0, "c3")

    assert log.duplicates == 2
    assert log.shortest_cross_gap == 0.0
    assert [example[0] for example in log.examples] == ["t1", "t2"]


def test_polls_a_full_gap_apart_or_by_one_process_are_not_duplicates() -> None:
    log = PollLog(min_gap=5.0)
    log.polled("t1", 100.0, "c1")
    log.polled("t1", 105.0, "c2")
    log.polled("t1", 101.0 + 5.0, "c2")
    log.polled("t1", 111.5, "c1")

    assert log.duplicates == 0
    assert log.shortest_cross_gap == 5.0
    assert log.polls_by_process == {"c1": 2, "c2": 2}


def test_the_takeover_is_the_first_poll_of_each_task_by_a_survivor_after_the_kill() -> None:
    log = PollLog(min_gap=2.5)
    log.polled("t1", 10.0, "c1")
    log.kill("c1", at=11.0)
    log.polled("t1", 11.5, "c1")
    log.polled("t2", 12.0, "c2")
    log.polled("t1", 20.0, "c3")
    log.polled("t1", 25.0, "c2")

    assert log.taken_over == {"t1": 20.0, "t2": 12.0}
    assert log.takeover_seconds(["t1"]) == 9.0
    assert math.isnan(log.takeover_seconds(["t3"]))
    assert log.takeover_seconds([]) == 0.0

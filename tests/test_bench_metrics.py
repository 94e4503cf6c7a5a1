"""The benchmark's metrics rows (tests/bench.py): the /metrics scrape run and the CPU overhead."""

from __future__ import annotations

import pytest

from tests.bench import cpu_overhead, scrape_run


async def test_the_scrape_run_serves_the_ledger_gauges_of_the_jobs_it_wrote() -> None:
    result = await scrape_run(3_000, scrapes=3)

    assert result["n"] == 3_000
    assert result["scrapes"] == 3
    assert result["queued_ok"] is True
    assert 0 < result["unfinished"] < 3_000
    assert 0 < result["median_ms"] <= result["slowest_ms"]


def test_the_overhead_is_the_extra_cpu_per_job_as_a_share_of_the_run_without_metrics() -> None:
    assert cpu_overhead({"cpu_per_1000": 10.0}, {"cpu_per_1000": 10.4}) == pytest.approx(0.04)
    assert cpu_overhead({"cpu_per_1000": 10.0}, {"cpu_per_1000": 9.5}) == pytest.approx(-0.05)

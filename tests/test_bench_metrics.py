"""The benchmark's metrics rows (tests/bench.py): the /metrics scrape run and the CPU overhead."""

from __future__ import annotations

import pytest

from tests.bench import cpu_overhead, metrics_call_costs, per_call_overhead, scrape_run


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


def test_the_per_call_overhead_counts_every_request_job_and_scrape_of_the_run() -> None:
    run = {
        "n": 1_000,
        "cpu_per_1000": 20.0,
        "wall_seconds": 150.0,
        "requests": {"vidu": {"all": 30_000}, "hidream": {"all": 2_000}},
    }
    result = per_call_overhead(run, {"request": 1e-5, "job": 1e-4}, scrape_seconds=0.01)

    assert result["requests"] == 32_000
    assert result["scrapes"] == 10
    assert result["added"] == pytest.approx(0.32 + 0.1 + 0.1)
    assert result["share"] == pytest.approx(0.52 / 20.0)


def test_each_metrics_hook_costs_some_cpu() -> None:
    costs = metrics_call_costs(calls=2_000)
    assert set(costs) == {"request", "job"}
    assert all(cost > 0 for cost in costs.values())

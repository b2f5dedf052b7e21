"""bench/baselines/: the two designs a team would otherwise pick, run by bench/hot_auction.py
--design sync|naive at toy size (the tool runs and its checks hold, not how fast), and the
counter of bids decided out of position order.

The tool's stacks are kept apart as tests/benchtool.py describes, except Redis: each gets a
server of its own (deploy/launch.py's EmbeddedRedis), fresh, so nothing a previous run left
queued reaches the naive baseline's worker, and no DB of this run's Redis is taken."""

from __future__ import annotations

import pytest

from bench.baselines.ordering import ordering_violations
from deploy.launch import EmbeddedRedis
from tests.benchtool import results_of, run_tool, tool_database_url

TIMEOUT_S = 180


@pytest.mark.parametrize(("positions", "violations"), [
    ([], 0),
    ([1, 2, 3, 4], 0),
    ([2, 1, 3], 1),
    ([1, 3, 2, 4], 1),
    ([3, 1, 2], 2),
    ([4, 3, 2, 1], 3),
    ([1, 5, 2, 3, 4, 6], 3),
])
def test_a_bid_decided_after_a_higher_position_is_a_violation(positions, violations):
    assert ordering_violations(positions) == violations


def test_the_violation_counter_reads_any_iterable_once():
    assert ordering_violations(iter([2, 3, 1])) == 1


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: the slow tests touch only their own Redis."""
    yield


@pytest.fixture
def tool_redis(tmp_path):
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        yield redis.url
    finally:
        redis.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("design", "via"), [("sync", "ws"), ("naive", "rest")])
def test_hot_auction_against_a_baseline_toy_run(tmp_path, tool_redis, design, via):
    results = tmp_path / "results"
    pacing = ["--rate", "10"] if via == "rest" else []  # as test_bench_hot: gentle on a shared PostgreSQL
    code, out = run_tool("bench.hot_auction", [
        "--design", design, "--via", via, "--bidders", "3", "--seconds", "3", "--drain", "30",
        "--web-workers", "1", "--bid-workers", "1", "--results", str(results),
        "--database-url", tool_database_url(tmp_path, "base"), "--redis-url", tool_redis, "--drop-db", *pacing,
    ], timeout=TIMEOUT_S)
    assert code == 0, out[-6000:]
    figures = results_of(results, f"hot-auction-{via}-{design}", out)["figures"]
    assert figures["decided"] > 0, out[-3000:]
    assert figures["checks"] and all(c["ok"] for c in figures["checks"].values()), figures["checks"]
    assert figures["design"] == design and figures["stack"]["design"] == design
    assert isinstance(figures["ordering_violations"], int) and figures["ordering_violations"] >= 0
    (ordering,) = figures["ordering"].values()
    assert ordering["decided"] == figures["decided"], ordering
    if design == "sync":
        assert figures["checks"]["decided in position order"]["ok"]
        assert figures["ordering_violations"] == 0
    else:
        # Out-of-order decisions are naive's finding, reported, not a failed check.
        assert "decided in position order" not in figures["checks"]
        assert figures["stack"]["naive_worker"]["pool"] == "prefork"
        assert "naive" in figures["cpu"], figures["cpu"]
        assert figures["stack_log"]["decide_tasks"].get("naive") == figures["decided"], figures["stack_log"]

"""bench/timers.py at toy size: 20 auctions ending within 5 s against the tool's own production
stack (see tests/benchtool.py); the run completes and its checks hold (each auction ended once,
none early, settlements and the ledger right). Not how late the ends were."""

from __future__ import annotations

import pytest

from tests.benchtool import results_of, run_tool, tool_database_url, tool_redis_url

pytestmark = pytest.mark.slow

REDIS_DB = 13  # of this run's Redis, reserved for this test's tool stack


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: this test touches only the tool's Redis DB."""
    yield


def test_timers_toy_run(tmp_path):
    results = tmp_path / "results"
    code, out = run_tool("bench.timers", [
        "--auctions", "20", "--window", "5", "--clusters", "2", "--cluster-share", "0.3", "--bid-share", "0.25",
        "--lead", "8", "--drain", "20", "--linger", "1", "--results", str(results),
        "--database-url", tool_database_url(tmp_path, "timers"), "--redis-url", tool_redis_url(REDIS_DB, flush=True),
        "--drop-db",
    ], timeout=180)
    assert code == 0, out[-6000:]
    figures = results_of(results, "timers", out)["figures"]
    assert figures["checks"] and all(c["ok"] for c in figures["checks"].values()), figures["checks"]
    assert figures["ended"] == figures["seen_on_wire"] == 20
    assert figures["sales"] == 5
    assert figures["lateness_ms"]["at_minus_ends_at"][0] >= 0
    assert len(figures["plots"]["cdf"]["at - ends_at (ms)"]) == 20
    # 6 auctions share 2 single seconds
    assert figures["busiest_second"] >= 3

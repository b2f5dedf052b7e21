"""bench/hot_auction.py at toy size, scenario 1 (one auction) and 2 (--auctions: many): the tool
runs its own production stack (deploy/launch.py run) and its checks hold. It asserts that the tool
works, not how fast the platform is. The tool's stack is kept apart from this test run's processes
as tests/benchtool.py describes."""

from __future__ import annotations

import pytest

from tests.benchtool import results_of, run_tool, tool_database_url, tool_redis_url

TIMEOUT_S = 180
REDIS_DB = 14  # of this run's Redis, reserved for this test's tool stack

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: this test touches only the tool's Redis DB."""
    yield


@pytest.mark.parametrize("via", ["ws", "rest"])
def test_hot_auction_toy_run(tmp_path, via):
    results = tmp_path / "results"
    # WS: closed loop. REST: open loop at 10 bids/s, gentle on the PostgreSQL server this test
    # session shares.
    pacing = ["--rate", "10"] if via == "rest" else []
    code, out = run_tool("bench.hot_auction", [
        "--via", via, "--bidders", "3", "--seconds", "3", "--drain", "30", "--results", str(results),
        "--database-url", tool_database_url(tmp_path, "hot"), "--redis-url", tool_redis_url(REDIS_DB), "--drop-db",
        *pacing,
    ], timeout=TIMEOUT_S)
    assert code == 0, out[-6000:]
    doc = results_of(results, f"hot-auction-{via}", out)
    figures = doc["figures"]
    assert figures["decided"] > 0, out[-3000:]
    assert figures["checks"] and all(c["ok"] for c in figures["checks"].values()), figures["checks"]
    assert figures["bidders_connected"] == 3
    assert doc["git"]["commit"] and doc["machine"]["nproc"]
    assert figures["plots"]["cdf"]["submit->result"] == sorted(figures["plots"]["cdf"]["submit->result"])
    assert figures["plots"]["timeline"]["decided bids/s"]
    md = next(results.glob(f"*-hot-auction-{via}.md")).read_text()
    assert "| check: ledger sums to 0, no negative available | PASS" in md


@pytest.mark.parametrize("via", ["ws", "rest"])
def test_many_auctions_toy_run(tmp_path, via):
    results = tmp_path / "results"
    pacing = ["--rate", "10"] if via == "rest" else []
    code, out = run_tool("bench.hot_auction", [
        "--via", via, "--auctions", "3", "--bidders", "9", "--seconds", "3", "--drain", "30",
        "--results", str(results), "--database-url", tool_database_url(tmp_path, "hot"),
        "--redis-url", tool_redis_url(REDIS_DB), "--drop-db", *pacing,
    ], timeout=TIMEOUT_S)
    assert code == 0, out[-6000:]
    figures = results_of(results, f"many-auctions-{via}", out)["figures"]
    assert figures["checks"] and all(c["ok"] for c in figures["checks"].values()), figures["checks"]
    assert figures["auctions"] == 3 and figures["bidders_connected"] == 9
    per = figures["per_auction"]
    assert len(per) == 3 and all(a["decided"] > 0 and not a["failed"] for a in per.values()), per
    assert sum(a["decided"] for a in per.values()) == figures["decided"]
    assert figures["watcher"]["sockets"] == 3
    assert str(figures["per_auction_spread"]["worst"]["auction_id"]) in per
    plots = figures["plots"]
    assert len(plots["cdf"]["submit->result"]) == figures["decided"]
    assert sum(n for _t, n in plots["timeline"]["decided bids/s"]) == figures["decided"]

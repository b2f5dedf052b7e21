"""bench/reconnect_storm.py at toy size: 50 sockets dropped at once, both ways (the web workers
killed; every connection aborted by the client), against the tool's own production stack (see
tests/benchtool.py); every socket resumes and its checks hold. Not how fast."""

from __future__ import annotations

import pytest

from tests.benchtool import results_of, run_tool, tool_database_url, tool_redis_url

pytestmark = pytest.mark.slow

REDIS_DB = 12  # of this run's Redis, reserved for this test's tool stack


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: this test touches only the tool's Redis DB."""
    yield


@pytest.mark.parametrize("drop", ["server", "client"])
def test_reconnect_storm_toy_run(tmp_path, drop):
    results = tmp_path / "results"
    code, out = run_tool("bench.reconnect_storm", [
        "--sockets", "50", "--drop", drop, "--rate", "4", "--before", "2", "--after", "2", "--storm-timeout", "60",
        "--drain", "20", "--results", str(results), "--web-workers", "2",
        "--database-url", tool_database_url(tmp_path, "storm"), "--redis-url", tool_redis_url(REDIS_DB, flush=True),
        "--drop-db",
    ], timeout=180)
    assert code == 0, out[-6000:]
    figures = results_of(results, "reconnect-storm", out)["figures"]
    assert figures["checks"] and all(c["ok"] for c in figures["checks"].values()), figures["checks"]
    assert figures["all_resumed_s"] is not None and figures["resume_ms"]["not_resumed"] == 0
    assert len(figures["plots"]["cdf"]["resume time after the drop (ms)"]) == 50
    assert figures["bids_placed"] > 0
    assert figures["plots"]["timeline"]["sockets resumed (cumulative)"][-1][1] == 50
    if drop == "server":
        assert len(figures["drop"]["killed_web_workers"]) == 2

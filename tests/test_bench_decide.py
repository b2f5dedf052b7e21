"""bench/decide_cost.py at toy size: it runs, its checks hold (every bid decided, the ledger at
zero), and on PostgreSQL a batch is the five statements services.bids_decide_pending says and
the server's CPU per decide is reported."""

from __future__ import annotations

import re

from tests.benchtool import run_tool, tool_database_url, tool_redis_url

REDIS_DB = 11  # of this run's Redis, reserved for this test's tool


def test_decide_cost_runs_and_counts_a_batchs_statements(tmp_path):
    url = tool_database_url(tmp_path, "decide")
    code, out = run_tool("bench.decide_cost", [
        "--database-url", url, "--redis-url", tool_redis_url(REDIS_DB, flush=True), "--drop-db",
        "--auctions", "3", "--bidders", "4", "--batch", "5", "--rounds", "3"], timeout=300)
    assert code == 0, out[-3000:]
    assert "3 auctions x 4 bidders, batches of 5, 3 rounds = 6 decides timed" in out, out[-3000:]
    statements = float(re.search(r"SQL statements\s+p50 ([\d.]+)", out).group(1))
    if url.startswith("postgres"):
        assert statements == 5, out[-3000:]
        assert re.search(r"PostgreSQL CPU ms\s+(mean [\d.]+|not measured)", out), out[-3000:]
    else:  # SQLite runs the queued writes one by one
        assert 7 < statements < 16, out[-3000:]

"""bench/hot_auction.py at toy size, scenario 1 (one auction) and 2 (--auctions: many): the tool
runs its own production stack (deploy/launch.py run) and its checks hold. It asserts that the tool
works, not how fast the platform is.

The tool's stack must not meet this test run's processes: it gets its own database (PostgreSQL
`gavel_bench_t<pid>`, dropped afterwards, when this run is on PostgreSQL; else a SQLite file in
tmp_path), its own var dir and port, and Redis DB 14 of this run's Redis, so its Celery workers
never consume the queues of the session's `live_stack` workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 180

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: this test touches only the tool's Redis DB."""
    yield


def tool_database_url(tmp_path: Path) -> str:
    url = os.environ.get("DATABASE_URL", "")
    u = urlsplit(url)
    if u.scheme in {"postgres", "postgresql", "pgsql"}:
        return urlunsplit(u._replace(path=f"/gavel_bench_t{os.getpid()}", query=""))
    return f"sqlite:///{tmp_path / 'gavel_bench.sqlite3'}"


def tool_redis_url() -> str:
    """This run's Redis, DB 14 (the tool never flushes a Redis it is given)."""
    return urlunsplit(urlsplit(settings.REDIS_URL)._replace(path="/14"))


def run_tool(args: list[str]) -> tuple[int, str]:
    """Run the tool; on timeout SIGTERM it (it stops its stack), then SIGKILL."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    proc = subprocess.Popen([sys.executable, "-m", "bench.hot_auction", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"bench.hot_auction did not finish within {TIMEOUT_S} s:\n{out[-6000:]}")
    return proc.returncode, out


@pytest.mark.parametrize("via", ["ws", "rest"])
def test_hot_auction_toy_run(tmp_path, via):
    results = tmp_path / "results"
    # WS: closed loop. REST: open loop at 10 bids/s, gentle on the PostgreSQL server this test
    # session shares.
    pacing = ["--rate", "10"] if via == "rest" else []
    code, out = run_tool([
        "--via", via, "--bidders", "3", "--seconds", "3", "--drain", "30", "--results", str(results),
        "--database-url", tool_database_url(tmp_path), "--redis-url", tool_redis_url(), "--drop-db", *pacing,
    ])
    assert code == 0, out[-6000:]
    files = sorted(results.glob(f"*-hot-auction-{via}.json"))
    assert len(files) == 1, (list(results.iterdir()) if results.exists() else "no results dir", out[-3000:])
    assert files[0].with_suffix(".md").exists()
    doc = json.loads(files[0].read_text())
    figures = doc["figures"]
    assert figures["decided"] > 0, out[-3000:]
    assert figures["checks"] and all(c["ok"] for c in figures["checks"].values()), figures["checks"]
    assert figures["bidders_connected"] == 3
    assert doc["git"]["commit"] and doc["machine"]["nproc"]
    assert figures["plots"]["cdf"]["submit->result"] == sorted(figures["plots"]["cdf"]["submit->result"])
    assert figures["plots"]["timeline"]["decided bids/s"]
    assert "| check: ledger sums to 0, no negative available | PASS" in files[0].with_suffix(".md").read_text()


@pytest.mark.parametrize("via", ["ws", "rest"])
def test_many_auctions_toy_run(tmp_path, via):
    results = tmp_path / "results"
    pacing = ["--rate", "10"] if via == "rest" else []
    code, out = run_tool([
        "--via", via, "--auctions", "3", "--bidders", "9", "--seconds", "3", "--drain", "30",
        "--results", str(results), "--database-url", tool_database_url(tmp_path), "--redis-url", tool_redis_url(),
        "--drop-db", *pacing,
    ])
    assert code == 0, out[-6000:]
    files = sorted(results.glob(f"*-many-auctions-{via}.json"))
    assert len(files) == 1, (list(results.iterdir()) if results.exists() else "no results dir", out[-3000:])
    figures = json.loads(files[0].read_text())["figures"]
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

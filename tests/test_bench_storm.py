"""bench/reconnect_storm.py: its client backs off exactly as gavel.js does, its per-socket check
catches what it is there to catch, and at toy size (50 sockets dropped at once, both ways: the web
workers killed, every connection aborted by the client; against the tool's own production stack,
see tests/benchtool.py) every socket resumes and the checks hold. Not how fast."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.reconnect_storm import verify_room
from bench.room_socket import backoff_delay_ms
from tests.benchtool import results_of, run_tool, tool_database_url, tool_redis_url

REDIS_DB = 12  # of this run's Redis, reserved for this test's tool stack
GAVEL_JS = Path(__file__).resolve().parent.parent / "realtime" / "static" / "realtime" / "gavel.js"


def test_backoff_is_the_browser_clients():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    grid = [(attempt, rnd) for attempt in range(8) for rnd in (0.0, 0.25, 0.5, 1 / 3, 0.999999)]
    script = (f"import {{ backoffDelay }} from {json.dumps(GAVEL_JS.as_uri())};"
              f"const grid = {json.dumps(grid)};"
              "console.log(JSON.stringify(grid.map(([a, r]) => backoffDelay(a, {initialMs: 500, maxMs: 10000}, r))));")
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert [backoff_delay_ms(a, r) for a, r in grid] == json.loads(done.stdout)


# seq -> (price, bid count) of a stream: started at 1, then a bid per seq at price seq - 1
STATES = {1: {s: (None, 0) if s <= 1 else (s - 1, s - 1) for s in range(0, 11)}}


def conn(snap_seq: int, last: int, *, applied: int | None = None, stale: int = 0, gaps: int = 0,
         price: int | None = -1) -> tuple:
    state = STATES[1][snap_seq]
    return (0.0, snap_seq, state[0] if price == -1 else price, state[1],
            last, last - snap_seq if applied is None else applied, stale, gaps)


def room(*conns: tuple, seq: int = 10, status: str = "live") -> tuple:
    return (1, list(conns), [], 1, 1.0, seq, status)


def test_verify_room_accepts_connections_that_tile_the_stream():
    assert verify_room(room(conn(2, 5), conn(7, 10)), {1: 10}, STATES) == []
    assert verify_room(room(conn(2, 5), conn(5, 10)), {1: 10}, STATES) == []


@pytest.mark.parametrize(("record", "problem"), [
    (room(conn(2, 5), conn(4, 10)), "behind"),                       # a reconnect's snapshot went back
    (room(conn(2, 5, applied=2), conn(7, 10)), "events applied"),    # a frame missing before the drop
    (room(conn(2, 5, gaps=1), conn(7, 10)), "skipped"),
    (room(conn(2, 5), conn(7, 10, stale=1)), "stale"),
    (room(conn(2, 5), conn(7, 10, price=3)), "snapshot at seq 7"),   # the snapshot is not the stream at 7
    (room(conn(2, 5), conn(7, 9), seq=9), "the auction's last is 10"),
    (room(conn(2, 5), conn(7, 10), status="reconnecting"), "reconnecting"),
])
def test_verify_room_flags_a_broken_record(record, problem):
    problems = verify_room(record, {1: 10}, STATES)
    assert any(problem in p for p in problems), problems


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: this test touches only the tool's Redis DB."""
    yield


@pytest.mark.slow
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

"""`make bench-quick`'s runner end to end on its cheapest scenario: `python -m bench.run --quick
--only fanout-100` runs the real fan-out tool, which must pass its checks, and leaves a run record,
its table and the plots, and docs/performance.md as it was. It asserts that the pipeline works,
not how fast anything is.

The tool never meets this test run's processes: its own Redis (ws_fanout starts a private one
when REDIS_URL is unset), and its own database (PostgreSQL `gavel_bench_r<pid>`, dropped
afterwards, when this run is on PostgreSQL; else SQLite in its temp dir)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.stack import drop_postgres

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
TIMEOUT_S = 150

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: the tool runs on a Redis of its own."""
    yield


@pytest.fixture
def tool_env():
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    u = urlsplit(os.environ.get("DATABASE_URL", ""))
    url = None
    if u.scheme in {"postgres", "postgresql", "pgsql"}:
        url = urlunsplit(u._replace(path=f"/gavel_bench_r{os.getpid()}", query=""))
        env["DATABASE_URL"] = url
    yield env
    if url:
        drop_postgres(url)


def test_bench_quick_runs_a_scenario_and_writes_the_record_table_and_plots(tmp_path, tool_env):
    doc_before = DOC.read_bytes() if DOC.exists() else None
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", "--quick", "--only", "fanout-100", "--results",
                             str(tmp_path)], cwd=ROOT, env=tool_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # bench.run stops its scenario, which stops its processes
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"bench.run did not finish within {TIMEOUT_S} s:\n{out[-6000:]}")
    assert proc.returncode == 0, out[-6000:]
    assert "fanout-100 | " in out  # the scenario's own progress, passed through

    records = list(tmp_path.glob("*.json"))
    assert len(records) == 1, out[-3000:]
    record = json.loads(records[0].read_text())
    assert record["ok"] and record["quick"] and record["machine"]["nproc"]
    [fan] = record["scenarios"]
    assert fan["name"] == "fanout-100" and fan["status"] == "pass", fan
    assert fan["figures"]["checks"] and all(c["ok"] for c in fan["figures"]["checks"].values())
    assert fan["figures"]["delivery"]["missing"] == 0
    assert {t["text"] for t in fan["targets"]} == {
        "delivery p99 <= 500 ms at 5 events/s, lost frames counted as late (issue: at 10,000 watchers)",
        "<= 30 KB per idle socket"}

    scenario_file = json.loads((tmp_path / fan["results_file"]).read_text())
    assert scenario_file["scenario"] == "fanout-100"
    assert sum(v for _, v in scenario_file["figures"]["plots"]["timeline"]["frames delivered/s"]) == \
        fan["figures"]["delivery"]["received"]

    md = records[0].with_suffix(".md").read_text()
    assert "| fanout-100 | PASS |" in md
    pngs = sorted(p.name for p in (tmp_path / record["stamp"] / "plots").glob("*.png"))
    assert pngs == ["fanout-100-cdf.png", "fanout-100-timeline.png"]
    assert (DOC.read_bytes() if DOC.exists() else None) == doc_before

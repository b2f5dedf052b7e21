"""What the bench tool tests share: each runs one tool at toy size, as a subprocess, against a
production stack of its own (deploy/launch.py run), and asserts that it ran and its checks held.

The tool's stack must not meet this test run's processes: it gets its own database (PostgreSQL
`gavel_bench_<name>_t<pid>`, dropped afterwards, when this run is on PostgreSQL; else a SQLite
file in tmp_path), its own var dir and port, and a Redis DB of this run's Redis reserved for the
tool, so its Celery workers never consume the queues of the session's `live_stack` workers."""

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


def tool_database_url(tmp_path: Path, name: str) -> str:
    url = os.environ.get("DATABASE_URL", "")
    u = urlsplit(url)
    if u.scheme in {"postgres", "postgresql", "pgsql"}:
        return urlunsplit(u._replace(path=f"/gavel_bench_{name}_t{os.getpid()}", query=""))
    return f"sqlite:///{tmp_path / 'gavel_bench.sqlite3'}"


def tool_redis_url(db: int, *, flush: bool = False) -> str:
    """This run's Redis, DB `db` (the tools never flush a Redis they are given; `flush` empties
    it here first, so that nothing a previous tool run left queued reaches this one)."""
    url = urlunsplit(urlsplit(settings.REDIS_URL)._replace(path=f"/{db}"))
    if flush:
        import redis

        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
    return url


def run_tool(module: str, args: list[str], timeout: float) -> tuple[int, str]:
    """Run `python -m <module> <args>`; on timeout SIGTERM it (it stops its stack), then SIGKILL."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"{module} did not finish within {timeout:.0f} s:\n{out[-6000:]}")
    return proc.returncode, out


def results_of(directory: Path, scenario: str, out: str) -> dict:
    """The one results JSON the run wrote (its Markdown twin must be there too)."""
    files = sorted(directory.glob(f"*-{scenario}.json"))
    if len(files) != 1:
        print(out)  # pytest shows it with the failure: the whole run, with any logs it printed
    assert len(files) == 1, (list(directory.iterdir()) if directory.exists() else "no results dir", out[-3000:])
    assert files[0].with_suffix(".md").exists()
    return json.loads(files[0].read_text())

"""Real Celery processes for tests: bid workers, the default worker and beat, started as the
launcher starts them, pointed at the test database. Tests that use them need committed data
(`transactional_db`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

from deploy.launch import WEB_NODE

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or "postgres"
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(predicate: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.05, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str]):
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"gavel-{name}-", suffix=".log")[1])
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, as in a crash or an OOM kill."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = test_database_url()
    env["PYTHONUNBUFFERED"] = "1"
    # A live process outlives the tests, and the test database gives ids again after each flush
    # (SQLite): a user remembered for a token (core.tokens) would answer for the next test's
    # user of the same id. The remembering itself is tested in-process (test_token_users.py).
    env["TOKEN_USER_CACHE_S"] = "0"
    return env


def _worker(name: str, hostname: str, *options: str, env: dict[str, str] | None = None) -> Proc:
    return Proc(name, [sys.executable, "-m", "celery", "-A", "celery_app", "worker", *options, "--hostname",
                       f"{hostname}@test", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                       "--without-heartbeat"], {**_env(), **(env or {})})


def bid_worker(name: str, **env: str) -> Proc:
    return _worker(name, name, "--bids", "--pool", "solo", "--queues", "bidworkers", env=env)


def stray_consumer(queue: str) -> Proc:
    """A worker outside the assignment consuming one auction's queue: a failover's old owner
    that has not yet noticed it lost the auction (partitioned from Redis's assignment, say).
    A bid worker cannot stand in for it: the reconciler makes each one's set match the
    assignment, and its sync drops any queue not in its set within a second."""
    return _worker("stray", "stray", "--pool", "solo", "--queues", queue)


def default_worker() -> Proc:
    return _worker("default", "default", "--pool", "threads", "--concurrency", "4", "--queues", "default")


def beat(schedule_dir: str) -> Proc:
    return Proc("beat", [sys.executable, "-m", "celery", "-A", "celery_app", "beat", "--scheduler",
                         "tasks.beat_scheduler:Scheduler", "--max-interval", "1",
                         "--pidfile=", "--schedule", os.path.join(schedule_dir, "celerybeat-schedule"),
                         "--loglevel", "INFO"], _env())


def wait_bid_worker_live(name: str, timeout: float = 30.0) -> None:
    from tasks import assignment

    wait_for(lambda: f"{name}@test" in assignment.live_workers(), timeout=timeout, what=f"bid worker {name}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_node(name: str, port: int, **env: str) -> Proc:
    return Proc(name, [sys.executable, *WEB_NODE, "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                       "--lifespan", "off"], {**_env(), **env})


def redis_server(port: int) -> Proc:
    """A Redis of the test's own, which it may kill and start again on the same port."""
    from deploy.launch import redis_executable

    return Proc("redis", [redis_executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], _env())


def wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    def accepting() -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(accepting, timeout=timeout, what=f"port {port}")

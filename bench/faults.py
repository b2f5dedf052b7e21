"""Fault suite (issue 6): break the platform on purpose under load and prove that nothing
acknowledged is lost, nothing is applied twice, no coin is created or destroyed.

    python -m bench.faults                     # every fault, then mixed (`make faults`)
    python -m bench.faults --quick             # the bounded version CI runs (tests/test_faults.py)
    python -m bench.faults --only kill-bid-worker,redis-restart

What it does:
1. starts its own cluster (bench/faults_cluster.py): a private PostgreSQL and Redis, two web
   nodes, --bid-workers bid workers, the default worker and beat, each breakable on its own;
2. opens --auctions auctions and starts the load: --bidders bidders bidding as fast as they are
   answered, --ws-bidders of them over WebSocket and the rest over REST (threads), each on a
   node of its own and switching node on a failure, and sending a bid that got no answer (or a
   5xx) again with the same client_bid_id, as a careful client and gavel.js do (the contract
   makes that create nothing twice); and --watchers sockets per auction (spread over both
   nodes), which reconnect with backoff and resume from their last seq, as gavel.js does;
3. injects the faults one at a time, then mixed, and undoes each as a supervisor would (restarts
   what it killed); measures how long the fault lasted and the recovery time: from the undo
   until a probe bid sent after it is decided (beat-stop: until the auctions that fell due
   meanwhile have ended; redis-restart: until its stranded bids are decided);
4. stops the load, waits until nothing is queued, then checks (bench/django_side.py
   faults-check, auctions.audit): every bid answered 202/200 is in the database and decided,
   once; every invariant of auctions.audit; and every watcher holds exactly the persisted
   stream of its auction (GET /api/auctions/{id}/events);
5. prints and writes (bench/results/) one row per fault: how long it lasted, bids in flight at
   the injection, acknowledged during the fault's window, decided, lost (must be 0), doubled
   (must be 0), recovery time; and the checks. Exit status 1 if a check fails.

The faults (issue 6):
- kill-bid-worker: SIGKILL a bid worker (repeated for each one in turn), restarted 1 s later;
- redis-restart: Redis killed and started empty (queues, doorbell marks, groups, heartbeats),
  with doorbells in it that no later bid rings again (the bid workers are down meanwhile);
- beat-stop: beat stopped for --beat-stop-s while auctions fall due, then started;
- web-node-kill: SIGKILL web node 1 with its sockets open, restarted 2 s later;
- pg-restart: PostgreSQL restarted (fast shutdown) under load;
- doorbell-chaos: for --chaos-s, every auction's queue gets doorbells twice and out of order
  (extra decide tasks, some delayed) and stale end tasks;
- pause-bid-worker: SIGSTOP a bid worker until its auctions move to the others, then SIGCONT:
  for a moment two consumers per auction;
- mixed: a bid worker killed, web node 2 killed and doorbell chaos, all at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from bench.django_side import make_bidders  # noqa: E402
from bench.faults_cluster import Cluster, ClusterError, wait_until  # noqa: E402
from bench.httpclient import exchange  # noqa: E402
from deploy.launch import DIE_WITH_PARENT  # noqa: E402

PYTHON = sys.executable
FAULTS = ["kill-bid-worker", "redis-restart", "beat-stop", "web-node-kill", "pg-restart", "doorbell-chaos",
          "pause-bid-worker", "mixed"]
GRANT = 10**9


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


# --- HTTP -----------------------------------------------------------------------------------


def http(method: str, url: str, body: dict | None = None, token: str | None = None,
         timeout: float = 10.0) -> tuple[int, dict]:
    """(status, JSON body); status 0 when no answer came (refused, reset, timed out)."""
    try:
        status, raw = exchange(method, url, body, token, timeout)
    except OSError:
        return 0, {}
    try:
        return status, json.loads(raw) if raw else {}
    except ValueError:
        return status, {"raw": raw[:200].decode(errors="replace")}


# --- the load: bidders ------------------------------------------------------------------------


@dataclass
class Ack:
    bid_id: int
    client_bid_id: str
    auction_id: int
    t: float  # when the acknowledgement arrived
    sent: float  # when the first attempt was sent


@dataclass
class Load:
    cluster: Cluster
    auctions: list[int]
    users: list[tuple[str, str]]
    rng: random.Random
    acks: list[Ack] = field(default_factory=list)
    answers: Counter = field(default_factory=Counter)  # status of every answer (0: none came)
    gave_up: list[str] = field(default_factory=list)  # client_bid_ids never acknowledged after retries
    running: bool = True
    paused: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    prices: dict[int, int] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)  # answered 409: no more bids there

    def bidder(self, k: int) -> None:
        name, token = self.users[k]
        node = k % 2
        n = 0
        while self.running:
            if self.paused:
                time.sleep(0.05)
                continue
            open_ = [x for x in self.auctions if x not in self.ended]
            auction_id = self.rng.choice(open_ or self.auctions)
            n += 1
            cid = f"{name}-{n}"
            amount = self.prices.get(auction_id, 1) + self.rng.randint(1, 20)
            body = {"amount": amount, "client_bid_id": cid}
            if self.rng.random() < 0.2:
                body["max_amount"] = amount + self.rng.randint(1, 200)
            sent = time.time()
            deadline = time.monotonic() + 90
            while True:
                status, data = http("POST", f"{self.cluster.base_url(node)}/api/auctions/{auction_id}/bids", body,
                                    token)
                with self.lock:
                    self.answers[status] += 1
                if status in (200, 202):
                    with self.lock:
                        self.acks.append(Ack(data["bid_id"], cid, auction_id, time.time(), sent))
                    break
                if status in (0, 502, 503, 504) or status >= 500:
                    if time.monotonic() > deadline or not self.running:
                        with self.lock:
                            self.gave_up.append(cid)
                        break
                    node = 1 - node  # another node, as a load balancer would
                    time.sleep(0.2)
                    continue
                if status == 409:
                    self.ended.add(auction_id)  # ended (or not live): bid elsewhere
                break  # a 4xx: refused, nothing stored
            if status in (200, 202, 409) and self.rng.random() < 0.1:
                self.refresh_price(auction_id, node)

    def refresh_price(self, auction_id: int, node: int) -> None:
        status, data = http("GET", f"{self.cluster.base_url(node)}/api/auctions/{auction_id}")
        if status == 200 and data.get("min_next_bid"):
            self.prices[auction_id] = data["min_next_bid"]


# --- the load: watchers -----------------------------------------------------------------------


class Watcher:
    """One room socket that must end up holding the auction's whole stream, gap-free."""

    def __init__(self, cluster: Cluster, auction_id: int, node: int) -> None:
        self.cluster, self.auction_id, self.node = cluster, auction_id, node
        self.events: dict[int, dict] = {}
        self.last = 0
        self.connects = 0
        self.drops = 0
        self.stop = False

    async def run(self) -> None:
        import websockets

        delay = 0.2
        while not self.stop:
            port = self.cluster.web_ports[self.node]
            try:
                async with websockets.connect(f"ws://127.0.0.1:{port}/ws/auctions/{self.auction_id}/",
                                              open_timeout=5, close_timeout=1, max_size=2**22) as ws:
                    self.connects += 1
                    delay = 0.2
                    await self._serve(ws)
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
                pass
            if self.stop:
                return
            self.drops += 1
            self.node = 1 - self.node
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, 2.0)

    async def _serve(self, ws) -> None:
        asked_after = None  # one resume per gap: a second would only repeat what is on its way
        async for text in ws:
            frame = json.loads(text)
            behind = False
            if frame.get("type") == "snapshot":
                behind = frame.get("seq", 0) > self.last
            elif frame.get("type") == "event":
                event = frame["event"]
                seq = event["seq"]
                if seq == self.last + 1:
                    self.events[seq] = event
                    self.last = seq
                behind = seq > self.last + 1
            if behind and asked_after != self.last:
                asked_after = self.last
                await ws.send(json.dumps({"type": "resume", "after_seq": self.last}))
            if self.stop:
                return


class WsBidder:
    """A bidder over WebSocket, on one auction's room socket with its token: sends a bid, waits
    for its `bid.queued` (the acknowledgement) or an `error` frame for it; when the socket drops
    before either, reconnects (to the other node) and sends the same bid again, same
    client_bid_id, as gavel.js resends its pending bids."""

    def __init__(self, load: Load, k: int, auction_id: int) -> None:
        self.load, self.k, self.auction_id = load, k, auction_id
        self.name, self.token = load.users[k]
        self.node = k % 2
        self.n = 0
        self.pending: dict | None = None
        self.sent_at = 0.0
        self.stop = False

    def _next_bid(self) -> dict:
        self.n += 1
        amount = self.load.prices.get(self.auction_id, 1) + self.load.rng.randint(1, 20)
        return {"type": "bid", "amount": amount, "client_bid_id": f"{self.name}-ws-{self.n}"}

    async def run(self) -> None:
        import websockets

        while not self.stop and self.load.running:
            port = self.load.cluster.web_ports[self.node]
            try:
                async with websockets.connect(
                        f"ws://127.0.0.1:{port}/ws/auctions/{self.auction_id}/?token={self.token}",
                        open_timeout=5, close_timeout=1) as ws:
                    await self._bid_loop(ws)
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
                pass
            with self.load.lock:
                self.load.answers["ws dropped"] += 1
            self.node = 1 - self.node
            await asyncio.sleep(0.2)
        if self.pending is not None:
            with self.load.lock:
                self.load.gave_up.append(self.pending["client_bid_id"])

    async def _bid_loop(self, ws) -> None:
        while not self.stop and self.load.running:
            if self.load.paused:
                await asyncio.sleep(0.05)
                continue
            if self.pending is None:
                self.pending, self.sent_at = self._next_bid(), time.time()
            cid = self.pending["client_bid_id"]
            await ws.send(json.dumps(self.pending))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                kind = frame.get("type")
                if kind == "bid.queued" and frame["bid"].get("client_bid_id") == cid:
                    with self.load.lock:
                        self.load.acks.append(Ack(frame["bid"]["bid_id"], cid, self.auction_id, time.time(),
                                                  self.sent_at))
                        self.load.answers["ws queued"] += 1
                    break
                if kind == "error" and frame.get("client_bid_id") == cid:
                    with self.load.lock:
                        self.load.answers[f"ws error {frame.get('code')}"] += 1
                    break
                if kind == "event" and frame["event"]["type"] == "bid.accepted":
                    self.load.prices[self.auction_id] = frame["event"]["data"]["min_next_bid"]
            self.pending = None


def run_watchers(watchers: list, stopped: threading.Event) -> threading.Thread:
    def main() -> None:
        async def go() -> None:
            tasks = [asyncio.create_task(w.run()) for w in watchers]
            while not stopped.is_set():
                await asyncio.sleep(0.2)
            for w in watchers:
                w.stop = True
            await asyncio.sleep(1.0)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(go())

    thread = threading.Thread(target=main, name="watchers", daemon=True)
    thread.start()
    return thread


# --- faults ------------------------------------------------------------------------------------


class Faults:
    def __init__(self, cluster: Cluster, load: Load, admin: str, a: argparse.Namespace) -> None:
        self.cluster, self.load, self.admin, self.a = cluster, load, admin, a
        self.probe_user = load.users[0]
        self.probe_auction: int | None = None
        self.probe_n = 0
        self.extra_auctions: list[int] = []  # opened during the faults (beat-stop's)
        self.kill_turn = 0
        self.undone = 0.0  # time.monotonic() when the current fault was undone

    def probe_decided(self, timeout: float) -> bool:
        """A bid sent now and decided: the platform takes and decides bids again."""
        self.probe_n += 1
        name, token = self.probe_user
        body = {"amount": 10**6 + self.probe_n, "client_bid_id": f"probe-{self.probe_n}"}
        deadline = time.monotonic() + timeout
        bid_id = None
        while time.monotonic() < deadline:
            for node in (0, 1):
                status, data = http("POST", f"{self.cluster.base_url(node)}/api/auctions/{self.probe_auction}/bids",
                                    body, token, timeout=3)
                if status in (200, 202):
                    bid_id = data["bid_id"]
                    break
            if bid_id is not None:
                break
            time.sleep(0.1)
        while bid_id is not None and time.monotonic() < deadline:
            for node in (0, 1):
                status, data = http("GET", f"{self.cluster.base_url(node)}/api/bids/{bid_id}", token=token, timeout=3)
                if status == 200 and data.get("status") != "queued":
                    return True
            time.sleep(0.05)
        return False

    def recovered(self, timeout: float = 120.0) -> float:
        """Seconds from the fault's undo until a bid sent after it is decided."""
        t0 = self.undone = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.probe_decided(timeout=max(1.0, deadline - time.monotonic())):
                return time.monotonic() - t0
        raise ClusterError(f"the platform did not recover within {timeout:.0f} s")

    # Each undoes its fault (restarts what it killed, as a supervisor would), sets self.undone
    # and returns the recovery time in seconds, from the undo.
    def probe_owner(self) -> str:
        """The bid worker that owns the probe auction (tasks.assignment's hash in Redis), so that
        the recovery time measures the failover; the next one in turn if none is recorded."""
        import redis

        try:
            owner = redis.Redis.from_url(self.cluster.redis.url, decode_responses=True).hget(
                "gavel:assign", str(self.probe_auction))
        except redis.RedisError:
            owner = None
        name = (owner or "").split("@")[0]
        if name not in self.cluster.bid_workers:
            name = self.cluster.bid_workers[self.kill_turn % len(self.cluster.bid_workers)]
        self.kill_turn += 1
        return name

    def kill_bid_worker(self) -> float:
        name = self.probe_owner()
        self.cluster.procs[name].kill()
        log(f"  SIGKILL {name}")
        time.sleep(1.0)
        self.cluster.restart(name)
        return self.recovered()

    def redis_restart(self) -> float:
        """Redis dies with doorbells in it that nothing else will ring again: the load pauses,
        the bid workers are killed (a blocked BRPOP would take a doorbell into a worker's socket
        even from a stopped process), each auction gets a bid whose doorbell waits in Redis,
        Redis restarts empty, the workers start again, and only the sweep finds those bids."""
        self.load.paused = True
        time.sleep(0.5)  # requests already sent are answered
        for name in self.cluster.bid_workers:
            self.cluster.procs[name].kill()
        stranded = [self.bid(auction_id) for auction_id in self.load.auctions]
        self.cluster.redis.restart()
        for name in self.cluster.bid_workers:
            self.cluster.restart(name)
        t0 = self.undone = time.monotonic()
        log(f"  Redis killed and started empty with the doorbells of {len(stranded)} bids in it; "
            "bid workers killed and started again")
        wait_until(lambda: all(self.decided(bid_id) for bid_id in stranded), timeout=60,
                   what="the stranded bids decided (the sweep rings their auctions again)")
        recovery = time.monotonic() - t0
        self.load.paused = False
        return recovery

    def bid(self, auction_id: int) -> int:
        self.probe_n += 1
        name, token = self.probe_user
        body = {"amount": self.load.prices.get(auction_id, 1) + 10**6 + self.probe_n,
                "client_bid_id": f"fault-{self.probe_n}"}
        status, data = http("POST", f"{self.cluster.base_url(0)}/api/auctions/{auction_id}/bids", body, token)
        if status not in (200, 202):
            raise ClusterError(f"bid on auction {auction_id}: HTTP {status} {data}")
        self.load.acks.append(Ack(data["bid_id"], body["client_bid_id"], auction_id, time.time(), time.time()))
        return data["bid_id"]

    def decided(self, bid_id: int) -> bool:
        status, data = http("GET", f"{self.cluster.base_url(0)}/api/bids/{bid_id}", token=self.probe_user[1],
                            timeout=3)
        return status == 200 and data.get("status") != "queued"

    def beat_stop(self) -> float:
        """Recovery: from beat's restart until the auctions that fell due meanwhile have ended."""
        beat = self.cluster.procs["beat"]
        t0 = time.monotonic()
        beat.stop()
        log(f"  beat stopped for {self.a.beat_stop_s:.0f} s; opening auctions that fall due meanwhile")
        # Opened after beat stopped, so no timer was armed for them: their ends wait for beat.
        now = time.time()
        due = []
        for k in range(3):
            status, data = http("POST", f"{self.cluster.base_url(0)}/api/auctions", {
                "title": f"due while beat is down {k}", "starts_at": iso(now - 1),
                "ends_at": iso(now + self.a.beat_stop_s / 2 + k), "starting_price": 1, "extend_window_s": 0,
                "extend_by_s": 0}, self.admin)
            if status == 201:
                due.append(data["id"])
        self.extra_auctions += due
        self.load.auctions += due
        time.sleep(max(0.0, self.a.beat_stop_s - (time.monotonic() - t0)))
        self.cluster.restart("beat")
        self.undone = time.monotonic()
        wait_until(lambda: all(http("GET", f"{self.cluster.base_url(0)}/api/auctions/{aid}")[1].get("status")
                               == "ended" for aid in due), timeout=60, what="the overdue auctions ended",
                   interval=0.2)
        return time.monotonic() - self.undone

    def web_node_kill(self, node: int = 0) -> float:
        name = f"web{node + 1}"
        self.cluster.procs[name].kill()
        log(f"  SIGKILL {name} (its sockets drop)")
        time.sleep(2.0)
        self.cluster.restart(name)
        recovery = self.recovered()
        wait_until(lambda: self.cluster.healthy(node), timeout=60, what=f"{name} healthy again")
        return recovery

    def pg_restart(self) -> float:
        self.cluster.pg.restart()
        log("  PostgreSQL restarted (fast shutdown)")
        return self.recovered()

    def doorbell_chaos(self, seconds: float | None = None) -> float:
        from celery import Celery

        app = Celery("chaos", broker=self.cluster.redis.url)
        stop = time.monotonic() + (seconds or self.a.chaos_s)
        sent = 0
        t0 = time.monotonic()
        rng = random.Random(7)
        while time.monotonic() < stop:
            for auction_id in list(self.load.auctions):
                queue = f"auction.{auction_id}"
                for _ in range(2):  # every doorbell twice
                    app.send_task("tasks.bids.decide", args=[auction_id], queue=queue,
                                  countdown=rng.choice([0, 0, 0.05, 0.3]))  # some out of order
                app.send_task("tasks.lifecycle.end", args=[auction_id, 0], queue=queue)  # a stale end
                sent += 3
            time.sleep(0.05)
        app.close()
        log(f"  {sent} extra doorbells and stale ends sent over {time.monotonic() - t0:.1f} s")
        return self.recovered()

    def pause_bid_worker(self) -> float:
        """Recovery: from the SIGSTOP (the fault is undone by the others taking over, not by the
        SIGCONT) until a bid is decided again."""
        name = self.probe_owner()
        proc = self.cluster.procs[name]
        t0 = time.monotonic()
        proc.signal(signal.SIGSTOP)
        log(f"  SIGSTOP {name} for {self.a.pause_s:.0f} s (its auctions move to the others)")
        recovery = self.recovered()
        time.sleep(max(0.0, self.a.pause_s - (time.monotonic() - t0)))
        proc.signal(signal.SIGCONT)
        self.undone = time.monotonic()
        log(f"  SIGCONT {name}: it finishes what it held while the others own its auctions")
        time.sleep(2.0)
        return recovery

    def mixed(self) -> float:
        name = self.cluster.bid_workers[0]
        chaos = threading.Thread(target=self.doorbell_chaos, args=(6.0,), daemon=True)
        chaos.start()
        self.cluster.procs[name].kill()
        self.cluster.procs["web2"].kill()
        log(f"  SIGKILL {name} and web2, with doorbell chaos")
        time.sleep(2.0)
        self.cluster.restart(name)
        self.cluster.restart("web2")
        chaos.join()
        recovery = self.recovered()
        wait_until(lambda: self.cluster.healthy(1), timeout=60, what="web2 healthy again")
        return recovery


# --- checks -------------------------------------------------------------------------------------


def faults_check(cluster: Cluster, acks: list[Ack]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([a.bid_id for a in acks], f)
    done = subprocess.run([PYTHON, "-m", "bench.django_side", "faults-check", "--acked", f.name], cwd=ROOT,
                          env=cluster.env, capture_output=True, text=True, timeout=600, preexec_fn=DIE_WITH_PARENT)
    Path(f.name).unlink(missing_ok=True)
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"faults-check failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def queued_left(cluster: Cluster) -> int:
    done = subprocess.run([PYTHON, "-m", "bench.django_side", "queued"], cwd=ROOT, env=cluster.env,
                          capture_output=True, text=True, timeout=120, preexec_fn=DIE_WITH_PARENT)
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT ")), None)
    return json.loads(line[len("RESULT "):])["queued"] if line else -1


def streams_match(cluster: Cluster, watchers: list[Watcher]) -> dict:
    logs: dict[int, list[dict]] = {}
    for auction_id in sorted({w.auction_id for w in watchers}):
        events, after = [], 0
        while True:
            status, data = http("GET", f"{cluster.base_url(0)}/api/auctions/{auction_id}/events"
                                       f"?after={after}&limit=1000")
            if status != 200:
                raise SystemExit(f"events of auction {auction_id}: HTTP {status}")
            page = data["events"]
            events += page
            if len(page) < 1000:
                break
            after = page[-1]["seq"]
        logs[auction_id] = events
    mismatched, short = [], []
    for w in watchers:
        log_events = logs[w.auction_id]
        held = [w.events[s] for s in sorted(w.events)]
        if len(held) < len(log_events):
            short.append(f"auction {w.auction_id}: watcher holds {len(held)} of {len(log_events)}")
        if [(e["seq"], e["type"], e["data"]) for e in held] != \
                [(e["seq"], e["type"], e["data"]) for e in log_events[:len(held)]]:
            mismatched.append(f"auction {w.auction_id}")
    return {"watchers": len(watchers), "short": short, "mismatched": mismatched,
            "events": sum(len(v) for v in logs.values()),
            "reconnects": sum(max(0, w.connects - 1) for w in watchers)}


# --- the run ------------------------------------------------------------------------------------


def setup(cluster: Cluster, a: argparse.Namespace, rng: random.Random) -> tuple[str, Load, int]:
    status, data = http("POST", f"{cluster.base_url(0)}/api/auth/token",
                        {"username": "admin", "password": cluster.admin_password})
    if status != 200:
        raise SystemExit(f"admin token: HTTP {status} {data}")
    admin = data["access"]
    users = make_bidders(cluster.env, prefix=f"fb{secrets.token_hex(2)}_", count=a.bidders + 1, grant=GRANT,
                         memo="fault suite")
    now = time.time()
    ids = []
    for k in range(a.auctions + 1):
        status, data = http("POST", f"{cluster.base_url(0)}/api/auctions", {
            "title": f"fault suite {k}", "starts_at": iso(now - 1), "ends_at": iso(now + 3600),
            "starting_price": 1, "min_increment": 1, "extend_window_s": 0, "extend_by_s": 0}, admin)
        if status != 201:
            raise SystemExit(f"create auction: HTTP {status} {data}")
        ids.append(data["id"])
    load = Load(cluster, ids[1:], users[1:], rng)
    return admin, load, ids[0]


def run(a: argparse.Namespace) -> int:
    chosen = [f.strip() for f in a.only.split(",")] if a.only else list(FAULTS)
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        raise SystemExit(f"unknown faults: {sorted(unknown)}; choose from {FAULTS}")
    rng = random.Random(a.seed)
    started = time.time()
    log(f"fault suite: {', '.join(chosen)}; {a.bidders} bidders, {a.auctions} auctions, "
        f"{a.watchers} watcher(s) each, {a.bid_workers} bid workers")
    with Cluster(bid_workers=a.bid_workers, keep=a.keep) as cluster:
        log(f"cluster up in {cluster.root}: web {cluster.web_ports}, PostgreSQL :{cluster.pg.port}, "
            f"Redis :{cluster.redis.port}")
        admin, load, probe_auction = setup(cluster, a, rng)
        watchers = [Watcher(cluster, aid, k % 2) for aid in load.auctions for k in range(a.watchers)]
        # The last --ws-bidders users bid over sockets (one auction each), the others over REST.
        ws_bidders = [WsBidder(load, a.bidders - 1 - k, load.auctions[k % len(load.auctions)])
                      for k in range(a.ws_bidders)]
        stop_watchers = threading.Event()
        watch_thread = run_watchers(watchers + ws_bidders, stop_watchers)
        threads = [threading.Thread(target=load.bidder, args=(k,), daemon=True)
                   for k in range(a.bidders - a.ws_bidders)]
        for t in threads:
            t.start()
        faults = Faults(cluster, load, admin, a)
        faults.probe_auction = probe_auction
        time.sleep(a.settle_s)
        rows = []
        plan = [f for f in chosen for _ in range(a.repeat_kills if f == "kill-bid-worker" else 1)]
        for name in plan:
            acked_before = len(load.acks)
            t_inject = time.time()
            log(f"fault: {name}")
            m0 = time.monotonic()
            recovery = getattr(faults, name.replace("-", "_"))()
            lasted = faults.undone - m0
            time.sleep(a.settle_s)
            t_end = time.time()
            rows.append({"fault": name, "t_inject": t_inject, "t_end": t_end, "lasted_s": round(lasted, 2),
                         "recovery_s": round(recovery, 2), "acked": len(load.acks) - acked_before})
            log(f"  recovered in {recovery:.1f} s; {rows[-1]['acked']} bids acknowledged in its window")
        load.running = False
        for t in threads:
            t.join(120)
        log("load stopped; waiting until no bid is queued")
        wait_until(lambda: queued_left(cluster) == 0, timeout=120, what="every bid decided", interval=1.0)
        due = [aid for aid in faults.extra_auctions]
        if due:
            log(f"waiting for the {len(due)} auctions that fell due while beat was down to end")
            wait_until(lambda: all(http("GET", f"{cluster.base_url(0)}/api/auctions/{aid}")[1].get("status")
                                   == "ended" for aid in due), timeout=60, what="their ends")
        time.sleep(1.5)  # the watchers' last frames
        stop_watchers.set()
        watch_thread.join(10)
        check = faults_check(cluster, load.acks)
        streams = streams_match(cluster, watchers)
        logs = cluster.logs()
    return report(a, started, rows, load, check, streams, logs)


def report(a, started, rows, load: Load, check: dict, streams: dict, logs: dict[str, str]) -> int:
    by_bid = check["bids"]
    for row in rows:
        window = [x for x in load.acks if row["t_inject"] <= x.t <= row["t_end"]]
        in_flight = sum(1 for x in load.acks if x.t < row["t_inject"]
                        and (by_bid.get(str(x.bid_id), {}).get("decided_at") or 0) > row["t_inject"])
        row.update(
            in_flight=in_flight, acknowledged=len(window),
            decided=sum(1 for x in window if by_bid.get(str(x.bid_id), {}).get("status") in ("accepted", "rejected")),
            lost=sum(1 for x in window if by_bid.get(str(x.bid_id), {}).get("status") not in ("accepted", "rejected")),
            doubled=sum(1 for x in window if by_bid.get(str(x.bid_id), {}).get("own_events", 0) > 1),
        )
    audit = check["audit"]
    tracebacks = {name: text.count("Traceback (most recent call last)") for name, text in logs.items()}
    http_5xx = {s: n for s, n in load.answers.items() if isinstance(s, int) and s >= 500}
    checks = {
        "nothing acknowledged lost": {"ok": check["missing"] == [] and check["undecided"] == [],
                                      "detail": f"{len(load.acks)} acknowledged; missing {check['missing'][:5]}, "
                                                f"undecided {check['undecided'][:5]}"},
        "nothing applied twice": {"ok": check["doubled"] == [],
                                  "detail": f"bids with more than one own bid.accepted: {check['doubled'][:5]}"},
        "auctions.audit: every invariant": {"ok": audit["ok"], "detail": "; ".join(
            f"{c['name']} {'ok' if c['ok'] else 'FAILED: ' + '; '.join(c['problems'][:3])}"
            for c in audit["checks"])},
        "watchers hold the persisted stream": {
            "ok": not streams["short"] and not streams["mismatched"],
            "detail": f"{streams['watchers']} watchers, {streams['reconnects']} reconnects; short "
                      f"{streams['short'][:3]}, mismatched {streams['mismatched'][:3]}"},
        "every fault recovered": {"ok": len(rows) > 0, "detail": f"{len(rows)} faults"},
    }
    head = ("| fault | lasted s | bids in flight | acknowledged | decided | lost | doubled | recovery s |\n"
            "|---|---|---|---|---|---|---|---|")
    table = "\n".join([head] + [f"| {r['fault']} | {r['lasted_s']} | {r['in_flight']} | {r['acknowledged']} | "
                                f"{r['decided']} | {r['lost']} | {r['doubled']} | {r['recovery_s']} |" for r in rows])
    answers = dict(sorted(load.answers.items(), key=lambda kv: str(kv[0])))
    summary = [("bids acknowledged / answers (HTTP status, or ws ...)", f"{len(load.acks)} / {answers}"),
               ("requests given up after 90 s of retries", str(len(load.gave_up))),
               ("5xx answered during faults", str(http_5xx or "none")),
               ("tracebacks in process logs", str({k: v for k, v in tracebacks.items() if v} or "none"))]
    print("\n" + "=" * 100 + "\nfault suite\n" + "=" * 100)
    print(table)
    print("\n".join(results.rows_text(summary)))
    print("\n".join(results.check_lines(checks)))
    print("=" * 100, flush=True)
    figures = {"rows": rows, "summary": dict(summary), "checks": checks, "streams": streams,
               "audit": audit, "tracebacks": tracebacks}
    markdown = table + "\n\n" + results.md_with_checks(summary, checks)
    json_path, _ = results.write("faults", figures, markdown, a.results, started=started)
    log(f"results: {json_path}")
    return 0 if all(c["ok"] for c in checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help=f"comma-separated faults of {','.join(FAULTS)}")
    p.add_argument("--quick", action="store_true", help="the bounded version CI runs")
    p.add_argument("--bidders", type=int, default=24)
    p.add_argument("--auctions", type=int, default=6)
    p.add_argument("--watchers", type=int, default=2, help="sockets per auction")
    p.add_argument("--ws-bidders", type=int, default=6, help="of the bidders, how many bid over WebSocket")
    p.add_argument("--bid-workers", type=int, default=3)
    p.add_argument("--beat-stop-s", type=float, default=30.0)
    p.add_argument("--chaos-s", type=float, default=10.0)
    p.add_argument("--pause-s", type=float, default=12.0)
    p.add_argument("--settle-s", type=float, default=4.0, help="load before the first fault and after each")
    p.add_argument("--repeat-kills", type=int, default=3, help="kill-bid-worker rounds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the cluster's temp dir (logs) afterwards")
    p.add_argument("--results", default=None, help="where results go (default bench/results/)")
    a = p.parse_args(argv)
    # SIGTERM (a test's timeout, Ctrl-C's sibling) unwinds through the cluster's cleanup.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    if a.quick:
        a.bidders, a.auctions, a.watchers, a.ws_bidders = min(a.bidders, 8), min(a.auctions, 3), 1, 2
        a.beat_stop_s, a.chaos_s, a.pause_s, a.settle_s, a.repeat_kills = 8.0, 4.0, 10.0, 2.0, 1
    return run(a)


if __name__ == "__main__":
    sys.exit(main())

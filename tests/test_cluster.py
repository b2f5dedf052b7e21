"""`make cluster`, end to end: deploy/launch.py run with WEB_NODES=2 BID_WORKERS=3 WEB_WORKERS=1
(what the Makefile target sets), through bench.stack, as a black box: HTTP and WebSockets on its
two ports, its Redis for the assignment, `manage.py audit` for the invariants.

It gets a database of its own (PostgreSQL `gavel_bench_cluster_t<pid>` when this run is on
PostgreSQL, else a SQLite file), a Redis server of its own and its own var dir, so the session's
live workers never meet it. WS_AUDIT_S is raised to a minute: a web node's periodic audit against
the event log would otherwise mask a broken fan-out between the nodes within the test's deadlines.

What the bid workers do at run time, joining and failing over under load with every invariant
checked, is tests/test_bid_pipeline.py's; here the cluster's own supervisor is part of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis as redis_lib
import websockets

from bench.faults import http
from bench.stack import Stack
from tests import procs
from tests.benchtool import tool_database_url

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BID_WORKERS = {"bids1", "bids2", "bids3"}


class Cluster:
    def __init__(self, stack: Stack, redis: redis_lib.Redis) -> None:
        self.stack = stack
        self.redis = redis
        self.a, self.b = stack.base_urls
        status, body = http("POST", f"{self.a}/api/auth/token", {"username": "admin", "password": stack.admin_password})
        assert status == 200, body
        self.admin = body["access"]

    def live_workers(self) -> set[str]:
        return set(self.redis.zrangebyscore("gavel:bidworkers", time.time() - 4, "+inf"))

    def owner(self, auction_id: int) -> str | None:
        return self.redis.hget("gavel:assign", str(auction_id))

    def auction(self, title: str) -> int:
        now = datetime.now(UTC)
        status, body = http("POST", f"{self.a}/api/auctions", {
            "title": title, "starts_at": (now - timedelta(seconds=1)).isoformat(),
            "ends_at": (now + timedelta(minutes=10)).isoformat(), "starting_price": 10, "min_increment": 1,
        }, token=self.admin)
        assert status == 201, body
        return body["id"]

    def bidder(self, username: str) -> str:
        status, body = http("POST", f"{self.a}/api/auth/register", {"username": username, "password": "Gavel-test-42!"})
        assert status == 201, body
        status, body = http("POST", f"{self.a}/api/auth/token", {"username": username, "password": "Gavel-test-42!"})
        assert status == 200, body
        return body["access"]

    def queued(self, tokens: list[str]) -> int:
        """Bids of these bidders still waiting for a decision (GET /api/me/bids)."""
        left = 0
        for token in tokens:
            status, body = http("GET", f"{self.a}/api/me/bids", token=token)
            assert status == 200, body
            left += sum(1 for bid in body["results"] if bid["status"] == "queued")
        return left

    def audit(self) -> str:
        done = subprocess.run([sys.executable, "manage.py", "audit"], cwd=ROOT, env=self.stack.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    port = procs.free_port()
    redis_server = procs.redis_server(port)
    stack = Stack(database_url=tool_database_url(tmp_path_factory.mktemp("cluster"), "cluster"),
                  redis_url=f"redis://127.0.0.1:{port}/0", web_nodes=2, bid_workers=3, web_workers=1,
                  drop_db=True, health_timeout=120,
                  extra_env={"WS_AUDIT_S": "60", "BID_RATE_PER_SECOND": "1000", "BID_RATE_BURST": "1000"})
    try:
        procs.wait_port(port)
        with stack:
            client = redis_lib.Redis(port=port, decode_responses=True)
            cluster = Cluster(stack, client)
            procs.wait_for(lambda: len(cluster.live_workers()) == 3, what="three live bid workers")
            yield cluster
            client.close()
    finally:
        redis_server.kill()


def test_make_cluster_runs_two_web_nodes_three_bid_workers_the_default_worker_and_beat(cluster):
    kinds = cluster.stack.processes()

    assert len(kinds["web"]) == 2  # one uvicorn process per node (WEB_WORKERS=1)
    assert {k for k in kinds if k.startswith("bids")} == BID_WORKERS
    assert len(kinds["worker"]) == 1 and len(kinds["beat"]) == 1
    for url in (cluster.a, cluster.b):
        status, body = http("GET", f"{url}/api/health")
        assert (status, body["status"]) == (200, "ok"), body
    assert {name.split("@")[0] for name in cluster.live_workers()} == BID_WORKERS
    log = cluster.stack.logfile.read_text()
    assert f"Gavel is up: {cluster.a}/" in log and f"{cluster.b}/ (web node 2)" in log


def test_bids_sent_to_node_a_reach_watchers_on_node_b_gap_free_and_in_order(cluster):
    auctions = [cluster.auction("Node A lot 1"), cluster.auction("Node A lot 2")]
    tokens = [cluster.bidder(f"ab{k}") for k in range(4)]
    positions: dict[int, int] = {}  # bid_id -> position, from node A's answers
    lock = threading.Lock()

    def rest_bidder(k: int) -> None:
        for i in range(20):
            for auction_id in auctions:
                status, body = http("POST", f"{cluster.a}/api/auctions/{auction_id}/bids",
                                    {"amount": 10 + 10 * i + k}, token=tokens[k])
                assert status == 202, body
                with lock:
                    positions[body["bid_id"]] = body["position"]

    async def ws_bidder(token: str) -> None:
        # The same over node A's socket: bid.queued carries the bid as stored.
        async with websockets.connect(f"ws://{cluster.a[7:]}/ws/auctions/{auctions[0]}/?token={token}") as ws:
            await ws.recv()  # snapshot
            for i in range(20):
                await ws.send(json.dumps({"type": "bid", "amount": 15 + 10 * i}))
                while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "bid.queued":
                    pass
                with lock:
                    positions[frame["bid"]["bid_id"]] = frame["bid"]["position"]

    async def watch(auction_id: int, seen: dict) -> None:
        async with websockets.connect(f"ws://{cluster.b[7:]}/ws/auctions/{auction_id}/") as ws:
            snapshot = json.loads(await ws.recv())
            seen["from"] = snapshot["seq"]
            seen["ready"].set()
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "event":
                    seen["events"].append(frame["event"])

    async def scenario() -> list[dict]:
        watchers = [{"auction": a, "events": [], "ready": asyncio.Event()} for a in auctions for _ in range(3)]
        tasks = [asyncio.create_task(watch(w["auction"], w)) for w in watchers]
        await asyncio.wait_for(asyncio.gather(*(w["ready"].wait() for w in watchers)), 20)
        await asyncio.gather(ws_bidder(tokens[0]), *(asyncio.to_thread(rest_bidder, k) for k in range(1, 4)))
        await asyncio.to_thread(procs.wait_for, lambda: cluster.queued(tokens) == 0, timeout=60,
                                what="every bid decided")
        finals = {a: http("GET", f"{cluster.a}/api/auctions/{a}")[1]["seq"] for a in auctions}

        async def delivered() -> None:
            while any(not w["events"] or w["events"][-1]["seq"] < finals[w["auction"]] for w in watchers):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(delivered(), 20)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return watchers

    watchers = asyncio.run(scenario())

    assert len(positions) == 3 * 20 * 2 + 20
    for w in watchers:
        status, body = http("GET", f"{cluster.a}/api/auctions/{w['auction']}/events?after={w['from']}&limit=1000")
        assert status == 200
        # Every event, once, in seq order, and exactly what the log holds.
        assert [e["seq"] for e in w["events"]] == list(range(w["from"] + 1, w["from"] + 1 + len(w["events"])))
        assert w["events"] == body["events"]
        # Bids were decided in the order node A received them: positions rise along the stream.
        own = [positions[e["data"]["bid_id"]] for e in w["events"]
               if e["type"] == "bid.accepted" and not e["data"]["proxy"]]
        assert len(own) > 10 and own == sorted(own)
    cluster.audit()


def test_make_bid_worker_beside_the_cluster_takes_a_share_and_hands_it_back_on_ctrl_c(cluster):
    """`make bid-worker NAME=bids4`: one more bid worker at run time, as an operator adds one."""
    auctions = [cluster.auction(f"Scale-out lot {k}") for k in range(6)]
    procs.wait_for(lambda: all(cluster.owner(a) for a in auctions), what="the auctions assigned")
    extra = subprocess.Popen([sys.executable, "deploy/launch.py", "bid-worker", "bids4"], cwd=ROOT,
                             env=cluster.stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        worker = procs.wait_for(lambda: next((w for w in cluster.live_workers() if w.startswith("bids4@")), None),
                                what="bids4 heartbeating")
        procs.wait_for(lambda: cluster.redis.scard(f"gavel:worker:{worker}"),
                       what="bids4 given a share of the live auctions")

        def balanced() -> bool:
            # A reconcile pass applies its moves one transaction each: bids4's first auction can
            # be seen before the pass's other moves, so the loads are read until the pass is done.
            loads = [cluster.redis.scard(f"gavel:worker:{w}") for w in cluster.live_workers()]
            return max(loads) - min(loads) <= 1

        procs.wait_for(balanced, timeout=10, what="the loads within one of each other")
        mine = {int(a) for a in cluster.redis.smembers(f"gavel:worker:{worker}")}

        extra.send_signal(signal.SIGINT)  # Ctrl-C: Celery's warm shutdown, which retires the worker at once
        extra.wait(30)  # (Celery exits 1 after a Ctrl-C, 0 after a SIGTERM)
        others = cluster.live_workers() - {worker}
        procs.wait_for(lambda: all(cluster.owner(a) in others for a in mine), timeout=5,
                       what="bids4's auctions back with the others")
    finally:
        if extra.poll() is None:
            os.killpg(extra.pid, signal.SIGKILL)
            extra.wait()


def test_make_bid_worker_refuses_to_start_without_a_cluster_to_join(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    done = subprocess.run([sys.executable, "deploy/launch.py", "bid-worker"], cwd=ROOT, capture_output=True,
                          text=True, env={**env, "GAVEL_VAR_DIR": str(tmp_path)}, timeout=30)

    assert done.returncode == 1
    assert "no `make run` or `make cluster` is running" in done.stdout


def test_killing_a_bid_worker_leaves_the_cluster_running_and_moves_its_auctions(cluster):
    auctions = [cluster.auction(f"Failover lot {k}") for k in range(3)]
    worker = procs.wait_for(lambda: cluster.owner(auctions[0]), what="the auction assigned")
    victim = worker.split("@")[0]  # one of the launcher's bidsN
    taken = {int(a) for a in cluster.redis.smembers(f"gavel:worker:{worker}")}

    for pid in cluster.stack.processes()[victim]:
        os.kill(pid, signal.SIGKILL)
    survivors = cluster.live_workers() - {worker}
    procs.wait_for(lambda: all(cluster.owner(a) in survivors for a in taken), timeout=15,
                   what=f"{victim}'s auctions to move to the others")

    log = cluster.stack.logfile.read_text()
    others = ", ".join(sorted(BID_WORKERS - {victim}))
    assert f"{victim} exited with status -9; {others} carry on without it" in log
    assert cluster.stack.proc.poll() is None
    token = cluster.bidder("after-failover")
    status, bid = http("POST", f"{cluster.b}/api/auctions/{auctions[0]}/bids", {"amount": 500}, token=token)
    assert status == 202, bid
    procs.wait_for(lambda: http("GET", f"{cluster.a}/api/bids/{bid['bid_id']}", token=token)[1]["status"] != "queued",
                   timeout=15, what="the bid decided by a survivor")
    for url in (cluster.a, cluster.b):
        assert http("GET", f"{url}/api/health")[0] == 200
    cluster.audit()

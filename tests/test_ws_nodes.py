"""Several web nodes: two uvicorn processes serving the same auction deliver the same stream,
and a user's frames reach their sockets on either node (Channels groups on channels-redis)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis as redis_lib
import websockets
from asgiref.sync import sync_to_async
from django.db import connection

from auctions import services
from core import tokens
from tests import procs

pytestmark = pytest.mark.slow


@pytest.fixture
def two_nodes(transactional_db):
    ports = [procs.free_port(), procs.free_port()]
    nodes = [procs.web_node(f"web{i}", port) for i, port in enumerate(ports)]
    try:
        for port in ports:
            procs.wait_port(port)
        yield ports
    finally:
        for node in nodes:
            node.stop()


def _closing(fn):
    """`fn`, closing the database connection of the worker thread it runs in, which would
    otherwise outlive the test database."""
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return call


async def _frames(ws, count: int, timeout: float = 10) -> list[dict]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(count)]


def test_two_web_nodes_deliver_the_same_stream(two_nodes, make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5)
    token = tokens.access_token_issue(user=alice)["access"]

    async def scenario():
        def url(port: int) -> str:
            return f"ws://127.0.0.1:{port}/ws/auctions/{auction.pk}/"

        async with websockets.connect(url(two_nodes[0]) + f"?token={token}") as a, \
                websockets.connect(url(two_nodes[1])) as b:
            snaps = [json.loads(await a.recv()), json.loads(await b.recv())]
            assert [s["seq"] for s in snaps] == [1, 1]
            # alice bids over node 0; bob's bid comes over REST's service on no node at all.
            await a.send(json.dumps({"type": "bid", "amount": 20, "max_amount": 100, "client_bid_id": "n0"}))
            # A session's live bid workers may decide alice's bid before the socket has answered
            # it: its event can come before bid.queued (its bid.result never does).
            seen_a = []
            while "bid.queued" not in [f["type"] for f in seen_a]:
                seen_a += await _frames(a, 1)
            await sync_to_async(_closing(services.bid_submit), thread_sensitive=False)(
                auction_id=auction.pk, user=bob, amount=50)
            await sync_to_async(_closing(services.bids_decide_pending), thread_sensitive=False)(auction_id=auction.pk)
            while sum(f["type"] == "event" for f in seen_a) < 3 or "bid.result" not in [f["type"] for f in seen_a]:
                seen_a += await _frames(a, 1)
            kinds = [f["type"] for f in seen_a]
            assert kinds.index("bid.queued") < kinds.index("bid.result")
            on_a = [f for f in seen_a if f["type"] == "event"]
            on_b = await _frames(b, 3)
            assert [f["event"] for f in on_a] == [f["event"] for f in on_b]
            assert [f["event"]["seq"] for f in on_b] == [2, 3, 4]

    asyncio.run(scenario())


def test_a_redis_outage_loses_no_event_on_either_node(transactional_db, make_user, make_auction, settings,
                                                       monkeypatch):
    """Kill the channel layer's Redis for 2 s while bids are decided, start it again: sockets on
    both nodes end with every event exactly once, in order (channels-redis's pub/sub layer drops
    what is published meanwhile; the nodes refill from the event log)."""
    from realtime import publish

    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5)
    redis_port = procs.free_port()
    servers = [procs.redis_server(redis_port)]
    procs.wait_port(redis_port)
    layer_url = f"redis://127.0.0.1:{redis_port}/0"
    # This process publishes to that Redis too, through a fresh publisher.
    settings.CHANNEL_LAYERS = {"default": {**settings.CHANNEL_LAYERS["default"],
                                           "CONFIG": {**settings.CHANNEL_LAYERS["default"]["CONFIG"],
                                                      "hosts": [{"address": layer_url}]}}}
    monkeypatch.setattr(publish, "_sender", None)
    ports = [procs.free_port(), procs.free_port()]
    # Same pub/sub prefix as this process's publisher (it derives from the Redis URL otherwise).
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    nodes = [procs.web_node(f"web{i}", port, REDIS_URL=layer_url, WS_AUDIT_S="1", CHANNELS_PREFIX=prefix)
             for i, port in enumerate(ports)]
    bidders = iter([alice, bob] * 3)
    amount = iter(range(10, 100, 10))

    @_closing
    def bid_and_decide() -> None:
        services.bid_submit(auction_id=auction.pk, user=next(bidders), amount=next(amount))
        services.bids_decide_pending(auction_id=auction.pk)
        publish.flush()

    async def scenario():
        socks = [await websockets.connect(f"ws://127.0.0.1:{port}/ws/auctions/{auction.pk}/") for port in ports]
        assert [json.loads(await ws.recv())["seq"] for ws in socks] == [1, 1]
        await sync_to_async(bid_and_decide, thread_sensitive=False)()
        for ws in socks:
            assert [f["event"]["seq"] for f in await _frames(ws, 1)] == [2]
        servers[0].kill()
        await sync_to_async(bid_and_decide, thread_sensitive=False)()
        await sync_to_async(bid_and_decide, thread_sensitive=False)()
        await asyncio.sleep(2)
        servers.append(procs.redis_server(redis_port))
        await sync_to_async(procs.wait_port)(redis_port)
        # Quiet auction: nothing reveals the gap but the nodes' audit against the log.
        for ws in socks:
            assert [f["event"]["seq"] for f in await _frames(ws, 2, timeout=20)] == [3, 4]
        # Both nodes subscribed again by themselves: the next event travels through Redis.
        group = f"{prefix}__group__{publish.auction_group(auction.pk)}"
        client = redis_lib.Redis.from_url(layer_url)
        await sync_to_async(procs.wait_for)(lambda: dict(client.pubsub_numsub(group)).get(group.encode()) == 2,
                                            what="both nodes subscribed to the restarted Redis")
        await sync_to_async(bid_and_decide, thread_sensitive=False)()
        for ws in socks:
            assert [f["event"]["seq"] for f in await _frames(ws, 1, timeout=20)] == [5]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 1.5)  # and nothing twice
            await ws.close()

    try:
        for port in ports:
            procs.wait_port(port)
        asyncio.run(scenario())
    finally:
        for node in nodes:
            node.stop()
        for server in servers:
            server.kill()

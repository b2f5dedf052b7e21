"""Several web nodes: two uvicorn processes serving the same auction deliver the same stream,
and a user's frames reach their sockets on either node (Channels groups on channels-redis)."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from asgiref.sync import sync_to_async

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
            assert json.loads(await a.recv())["type"] == "bid.queued"
            await sync_to_async(services.bid_submit, thread_sensitive=False)(
                auction_id=auction.pk, user=bob, amount=50)
            await sync_to_async(services.bids_decide_pending, thread_sensitive=False)(auction_id=auction.pk)
            on_a = [f for f in await _frames(a, 4) if f["type"] == "event"]
            on_b = await _frames(b, 3)
            assert [f["event"] for f in on_a] == [f["event"] for f in on_b]
            assert [f["event"]["seq"] for f in on_b] == [2, 3, 4]

    asyncio.run(scenario())

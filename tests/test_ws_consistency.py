"""Zulip's check for an event system: a snapshot plus the events after it equals a fresh
snapshot, for sockets that connect at random moments of a busy auction."""

from __future__ import annotations

import asyncio
import json
import random
import threading

import pytest
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator
from django.db import connection

from auctions import services
from core.asgi import application
from realtime.publish import auction_group
from tests import stream_model

pytestmark = pytest.mark.usefixtures("transactional_db")


def _busy_auction(auction, users, done: threading.Event, *, bids: int = 80, seed: int = 5) -> None:
    rng = random.Random(seed)
    try:
        price = 10
        for k in range(bids):
            user = users[k % len(users)]
            amount = price + rng.randint(1, 6)  # distinct, rising: no ties on the leaderboard
            max_amount = amount + rng.randint(0, 12) if rng.random() < 0.3 else None
            services.bid_submit(auction_id=auction.pk, user=user, amount=amount, max_amount=max_amount)
            if rng.random() < 0.5:
                services.bids_decide_pending(auction_id=auction.pk)
                auction.refresh_from_db()
                price = auction.current_price or price
            price += 7
        services.bids_decide_pending(auction_id=auction.pk)
    finally:
        connection.close()
        done.set()


def test_snapshot_plus_events_equals_a_fresh_snapshot(make_user, make_auction):
    users = [make_user(f"u{i}") for i in range(4)]
    auction = make_auction(starting_price=10, min_increment=1, extend_window_s=0)
    done = threading.Event()

    async def watcher(delay: float) -> tuple[dict, list[dict]]:
        await asyncio.sleep(delay)
        comm = WebsocketCommunicator(application, f"/ws/auctions/{auction.pk}/")
        assert (await comm.connect(timeout=5))[0]
        snapshot = json.loads(await comm.receive_from(timeout=5))
        events = []
        while True:
            # (receive_from's timeout would kill the consumer; receive_nothing only waits.)
            if await comm.receive_nothing(timeout=1.0, interval=0.01):
                if done.is_set():
                    break
                continue
            frame = json.loads(await comm.receive_from(timeout=5))
            assert frame["type"] == "event"
            events.append(frame["event"])
        await comm.disconnect()
        return snapshot, events

    async def scenario():
        producer = threading.Thread(target=_busy_auction, args=(auction, users, done))
        watchers = [asyncio.ensure_future(watcher(d)) for d in (0.0, 0.05, 0.15, 0.3, 0.5, 0.8)]
        producer.start()
        results = await asyncio.gather(*watchers)
        await asyncio.get_running_loop().run_in_executor(None, producer.join)
        fresh = WebsocketCommunicator(application, f"/ws/auctions/{auction.pk}/")
        assert (await fresh.connect(timeout=5))[0]
        final = json.loads(await fresh.receive_from(timeout=5))
        await fresh.disconnect()
        return results, final

    results, final = asyncio.run(scenario())
    assert final["seq"] > 40
    starts = set()
    for snapshot, events in results:
        folded = snapshot
        for event in events:
            folded = stream_model.apply(folded, event)
        assert stream_model.view(folded) == stream_model.view(final)
        starts.add(snapshot["seq"])
    assert len(starts) > 1, "every watcher connected at the same moment; the test proved little"


def test_a_closed_socket_leaves_no_group_membership_behind(make_auction):
    auction = make_auction()

    async def scenario():
        layer = get_channel_layer()
        comm = WebsocketCommunicator(application, f"/ws/auctions/{auction.pk}/")
        assert (await comm.connect(timeout=5))[0]
        await comm.receive_from(timeout=5)
        group = layer._get_layer()._get_group_channel_name(auction_group(auction.pk))
        assert group in layer._get_layer().groups
        await comm.disconnect()
        assert group not in layer._get_layer().groups

    asyncio.run(scenario())

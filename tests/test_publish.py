"""Events leave through realtime.publish, after commit, to the Channels groups on real Redis."""

from __future__ import annotations

import asyncio
import json

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from auctions import services
from realtime import publish
from realtime.publish import LOBBY_GROUP, auction_group, user_group


def _listen(groups: list[str], action, count: int) -> list[dict]:
    # What the test's setup published (an auction's creation) is sent by the publisher's thread;
    # wait for it to leave, or it may reach the subscription below and pass for the action's.
    publish.flush()

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        for group in groups:
            await layer.group_add(group, channel)
        await sync_to_async(action, thread_sensitive=False)()
        received = []
        try:
            while len(received) < count:
                received.append(await asyncio.wait_for(layer.receive(channel), 5))
        finally:
            for group in groups:
                await layer.group_discard(group, channel)
        return received

    return asyncio.run(scenario())


def test_decisions_reach_the_auction_group_in_seq_order_after_commit(transactional_db, make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5)

    def bid_and_decide() -> None:
        services.bid_submit(auction_id=auction.pk, user=alice, amount=20, max_amount=100)
        services.bid_submit(auction_id=auction.pk, user=bob, amount=50)
        services.bids_decide_pending(auction_id=auction.pk)

    messages = _listen([auction_group(auction.pk)], bid_and_decide, count=1)
    # One decision batch, one message: its frames go to each socket in one write.
    assert [(m["type"], m["seq"]) for m in messages] == [("auction.events", 2)]
    events = [json.loads(text)["event"] for text in messages[0]["texts"]]
    assert [e["seq"] for e in events] == [2, 3, 4]
    assert [(e["data"]["bidder"], e["data"]["amount"], e["data"]["proxy"]) for e in events] == [
        ("alice", 20, False), ("bob", 50, False), ("alice", 55, True)]


def test_the_outbid_user_and_the_bidder_hear_about_it(transactional_db, make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=20)
    services.bids_decide_pending(auction_id=auction.pk)

    def outbid() -> None:
        services.bid_submit(auction_id=auction.pk, user=bob, amount=60)
        services.bids_decide_pending(auction_id=auction.pk)

    frames = [m["frame"] for m in _listen([user_group(alice.pk), user_group(bob.pk)], outbid, count=2)]
    by_type = {f["type"]: f for f in frames}
    assert by_type["outbid"] == {"type": "outbid", "auction_id": auction.pk, "current_price": 60}
    assert by_type["bid.result"]["bid"]["status"] == "accepted"


def test_the_lobby_hears_about_a_new_auction(transactional_db, make_auction):
    created = []
    messages = _listen([LOBBY_GROUP], lambda: created.append(make_auction(title="Clock")), count=1)
    assert messages[0]["type"] == "lobby.auction"
    assert messages[0]["auction"]["title"] == "Clock" and messages[0]["auction"]["status"] == "live"


def test_nothing_is_published_for_work_that_rolls_back(transactional_db, make_user, make_auction):
    from django.db import transaction

    alice = make_user("alice")
    auction = make_auction()

    def rolled_back_then_real() -> None:
        with transaction.atomic():
            services.auction_cancel(auction_id=auction.pk)
            transaction.set_rollback(True)
        services.bid_submit(auction_id=auction.pk, user=alice, amount=20)
        services.bids_decide_pending(auction_id=auction.pk)

    messages = _listen([auction_group(auction.pk)], rolled_back_then_real, count=1)
    sent = [json.loads(text)["event"]["type"] for text in messages[0]["texts"]]
    assert sent == ["bid.accepted"]  # no auction.cancelled went out


def test_a_burst_of_user_frames_reaches_every_group_complete_and_in_order(transactional_db):
    # A decided batch queues a frame per bidder at once; the publisher sends what is queued in
    # pipelines (realtime.layer.group_send_many): each group must still get all of its own, in order.
    groups = [user_group(900_000 + k) for k in range(3)]

    def burst() -> None:
        for n in range(600):
            publish.publish_to_user(900_000 + n % 3, {"type": "outbid", "auction_id": 1, "current_price": n})
        publish.flush()

    messages = _listen(groups, burst, count=600)
    for k, group in enumerate(groups):
        prices = [m["frame"]["current_price"] for m in messages if m["group"] == group]
        assert prices == list(range(k, 600, 3))


def test_group_send_many_publishes_to_each_group_in_order():
    async def scenario() -> dict[str, list[int]]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        for group in ("many.a", "many.b"):
            await layer.group_add(group, channel)
        await layer.group_send_many([(g, {"type": "x", "group": g, "n": n})
                                     for n in range(50) for g in ("many.a", "many.b")])
        got: dict[str, list[int]] = {"many.a": [], "many.b": []}
        try:
            for _ in range(100):
                message = await asyncio.wait_for(layer.receive(channel), 5)
                got[message["group"]].append(message["n"])
        finally:
            for group in ("many.a", "many.b"):
                await layer.group_discard(group, channel)
        return got

    got = asyncio.run(scenario())
    assert got == {"many.a": list(range(50)), "many.b": list(range(50))}

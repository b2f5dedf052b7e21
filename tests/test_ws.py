"""The WebSocket protocol (CONTRACT.md, WebSocket) through the real ASGI app, Channels and
channels-redis on real Redis; bids are decided by calling the decider the workers call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator

from auctions import services
from core import tokens
from core.asgi import application
from realtime.publish import auction_group

pytestmark = pytest.mark.usefixtures("transactional_db")


def run(coro):
    return asyncio.run(coro)


async def connect(path: str, *, token: str | None = None, origin: str | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())] if origin else []
    url = path + (f"?token={token}" if token else "")
    comm = WebsocketCommunicator(application, url, headers=headers)
    connected, _ = await comm.connect(timeout=5)
    assert connected, f"{path} refused"
    return comm


async def receive(comm: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    return json.loads(await comm.receive_from(timeout=timeout))


async def receive_until(comm, type_: str, timeout: float = 5) -> dict[str, Any]:
    while True:
        frame = await receive(comm, timeout)
        if frame["type"] == type_:
            return frame


def token_for(user) -> str:
    return tokens.access_token_issue(user=user)["access"]


decide = sync_to_async(lambda auction_id: services.bids_decide_pending(auction_id=auction_id), thread_sensitive=False)


def test_a_watcher_gets_a_snapshot_then_events_in_seq_order(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5)

    async def scenario():
        comm = await connect(f"/ws/auctions/{auction.pk}/")
        snap = await receive(comm)
        assert snap["type"] == "snapshot" and snap["seq"] == 1
        assert snap["auction"]["id"] == auction.pk and snap["auction"]["current_price"] is None
        assert snap["leaderboard"] == [] and snap["server_time"].endswith("Z")
        await sync_to_async(services.bid_submit, thread_sensitive=False)(
            auction_id=auction.pk, user=alice, amount=20, max_amount=100)
        await sync_to_async(services.bid_submit, thread_sensitive=False)(auction_id=auction.pk, user=bob, amount=50)
        await decide(auction.pk)
        events = [await receive(comm) for _ in range(3)]
        assert [f["type"] for f in events] == ["event"] * 3
        assert [f["event"]["seq"] for f in events] == [2, 3, 4]
        assert events[2]["event"]["data"]["proxy"] is True and events[2]["event"]["data"]["current_price"] == 55
        await comm.disconnect()

    run(scenario())


def test_on_a_node_that_takes_prepared_runs_a_batch_of_events_is_one_message(make_user, make_auction):
    from realtime import wsnode

    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5)

    async def node_scope(scope, receive, send):
        # What realtime.wsnode.PreparedFrameProtocol puts in the scope of the sockets it serves.
        scope = {**scope, "extensions": {**scope.get("extensions", {}), wsnode.FRAME_KEY: {}}}
        await application(scope, receive, send)

    async def scenario():
        comm = WebsocketCommunicator(node_scope, f"/ws/auctions/{auction.pk}/")
        assert (await comm.connect(timeout=5))[0]
        assert (await receive(comm))["type"] == "snapshot"
        await sync_to_async(services.bid_submit, thread_sensitive=False)(
            auction_id=auction.pk, user=alice, amount=20, max_amount=100)
        await sync_to_async(services.bid_submit, thread_sensitive=False)(auction_id=auction.pk, user=bob, amount=50)
        await decide(auction.pk)
        message = await comm.receive_output(timeout=5)
        texts = message[wsnode.TEXTS_KEY]
        assert [json.loads(t)["event"]["seq"] for t in texts] == [2, 3, 4]
        assert message[wsnode.FRAME_KEY] == b"".join(wsnode.prepare(t)[wsnode.FRAME_KEY] for t in texts)
        await comm.disconnect()

    run(scenario())


def test_a_bid_over_the_socket_is_queued_then_decided(make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction()

    async def scenario():
        comm = await connect(f"/ws/auctions/{auction.pk}/", token=token_for(alice))
        await receive(comm)
        await comm.send_json_to({"type": "bid", "amount": 25, "client_bid_id": "c1"})
        queued = await receive(comm)
        assert queued["type"] == "bid.queued"
        assert queued["bid"]["status"] == "queued" and queued["bid"]["client_bid_id"] == "c1"
        await decide(auction.pk)
        frames = [await receive(comm) for _ in range(2)]
        by_type = {f["type"]: f for f in frames}
        assert by_type["bid.result"]["bid"]["status"] == "accepted"
        assert by_type["event"]["event"]["data"]["bid_id"] == queued["bid"]["bid_id"]
        # Sent again, the same client_bid_id creates nothing and answers with the decided bid.
        await comm.send_json_to({"type": "bid", "amount": 99, "client_bid_id": "c1"})
        again = await receive(comm)
        assert again["type"] == "bid.queued" and again["bid"]["bid_id"] == queued["bid"]["bid_id"]
        assert (await receive(comm))["bid"]["status"] == "accepted"
        await comm.disconnect()

    run(scenario())


def test_a_result_decided_before_the_socket_answered_still_comes_after_bid_queued(make_user, make_auction, monkeypatch):
    """A fast worker can decide a bid, and its bid.result reach the process, before the socket has
    sent bid.queued; the client must still see queued first."""
    import time

    from auctions import intake_batch
    from realtime import publish

    alice = make_user("alice")
    auction = make_auction()
    real = intake_batch._store

    def submit_then_decide(submissions):
        answer = real(submissions)
        services.bids_decide_pending(auction_id=auction.pk)
        publish.flush()
        time.sleep(0.3)  # bid.result is in the process's hub before bid.queued goes out
        return answer

    monkeypatch.setattr(intake_batch, "_store", submit_then_decide)

    async def scenario():
        comm = await connect(f"/ws/auctions/{auction.pk}/", token=token_for(alice))
        await receive(comm)
        await comm.send_json_to({"type": "bid", "amount": 25, "client_bid_id": "c1"})
        got = [await receive(comm) for _ in range(3)]
        own = [f["type"] for f in got if f["type"] != "event"]
        assert own == ["bid.queued", "bid.result"]
        await comm.disconnect()

    run(scenario())


def test_the_web_session_cookie_identifies_the_socket_user(make_user, make_auction):
    from django.test import Client

    make_user("alice")
    auction = make_auction()
    browser = Client()
    assert browser.login(username="alice", password="correct-horse-42")
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def scenario():
        comm = WebsocketCommunicator(application, f"/ws/auctions/{auction.pk}/", headers=[(b"cookie", cookie)])
        assert (await comm.connect(timeout=5))[0]
        await receive(comm)
        await comm.send_json_to({"type": "bid", "amount": 25})
        queued = await receive(comm)
        assert queued["type"] == "bid.queued" and queued["bid"]["bidder"] == "alice"
        await comm.disconnect()

    run(scenario())


def test_refusals_come_as_error_frames_and_the_socket_stays_open(make_user, make_auction):
    alice = make_user("alice")
    make_user("seller")
    auction = make_auction(seller="seller")
    from core.models import User

    seller = User.objects.get(username="seller")

    async def scenario():
        anon = await connect(f"/ws/auctions/{auction.pk}/")
        await receive(anon)
        await anon.send_json_to({"type": "bid", "amount": 25, "client_bid_id": "x"})
        assert await receive(anon) == {"type": "error", "code": "not_authenticated", "message": "log in to bid",
                                       "client_bid_id": "x"}
        await anon.send_to(text_data="{not json")
        assert (await receive(anon))["code"] == "invalid_json"
        await anon.send_json_to({"type": "dance"})
        assert (await receive(anon))["code"] == "unknown_type"
        await anon.send_json_to({"type": "resume", "after_seq": "zero"})
        assert (await receive(anon))["code"] == "invalid_field"
        await anon.send_json_to({"type": "ping"})
        assert (await receive(anon))["type"] == "pong"

        comm = await connect(f"/ws/auctions/{auction.pk}/", token=token_for(alice))
        await receive(comm)
        await comm.send_json_to({"type": "bid", "amount": 2.5})
        assert (await receive(comm))["code"] == "invalid_amount"
        await comm.send_json_to({"type": "bid", "amount": 30, "max_amount": 20, "client_bid_id": "m"})
        assert await receive(comm) == {"type": "error", "code": "invalid_amount",
                                       "message": "max_amount must not be below amount", "client_bid_id": "m"}
        sell = await connect(f"/ws/auctions/{auction.pk}/", token=token_for(seller))
        await receive(sell)
        await sell.send_json_to({"type": "bid", "amount": 30})
        assert (await receive(sell))["code"] == "seller_cannot_bid"
        for c in (anon, comm, sell):
            await c.disconnect()

    run(scenario())


def test_a_bad_token_or_a_foreign_origin_is_refused_at_the_handshake(make_auction):
    auction = make_auction()

    async def scenario():
        for kwargs in ({"token": "garbage"}, {"origin": "https://evil.example"}):
            headers = [(b"origin", kwargs["origin"].encode())] if "origin" in kwargs else []
            url = f"/ws/auctions/{auction.pk}/" + (f"?token={kwargs['token']}" if "token" in kwargs else "")
            comm = WebsocketCommunicator(application, url, headers=headers)
            connected, _ = await comm.connect(timeout=5)
            assert not connected, kwargs
        ok = await connect(f"/ws/auctions/{auction.pk}/", origin="http://localhost:8000")
        await ok.disconnect()

    run(scenario())


def test_an_oversized_frame_closes_with_1009_and_a_flood_closes_with_1008(make_auction):
    auction = make_auction()

    async def scenario():
        comm = await connect(f"/ws/auctions/{auction.pk}/")
        await receive(comm)
        await comm.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 5000}))
        closed = await comm.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 1009}

        flood = await connect(f"/ws/auctions/{auction.pk}/")
        await receive(flood)
        codes = []
        for _ in range(200):
            await flood.send_json_to({"type": "ping"})
        while True:
            out = await flood.receive_output(timeout=5)
            if out["type"] == "websocket.close":
                assert out["code"] == 1008
                break
            codes.append(json.loads(out["text"]).get("code"))
        assert codes.count("rate_limited") == 20

    run(scenario())


def test_resume_replays_what_a_client_missed(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction()
    for k in range(4):
        services.bid_submit(auction_id=auction.pk, user=(alice, bob)[k % 2], amount=10 + k)
    services.bids_decide_pending(auction_id=auction.pk)

    async def scenario():
        comm = await connect(f"/ws/auctions/{auction.pk}/")
        assert (await receive(comm))["seq"] == 5
        await comm.send_json_to({"type": "resume", "after_seq": 2})
        replay = [await receive(comm) for _ in range(3)]
        assert [f["event"]["seq"] for f in replay] == [3, 4, 5]
        await comm.disconnect()

    run(scenario())


def test_a_dropped_message_is_refilled_from_the_log(make_user, make_auction, monkeypatch):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction()
    from realtime import publish

    real = publish.publish_events
    dropped = []

    def lossy(auction_id, events):
        # The channel layer loses the first event (capacity, a Redis blip): only the log has it.
        if not dropped:
            dropped.append(events[0]["seq"])
            events = events[1:]
        real(auction_id, events)

    async def scenario():
        comm = await connect(f"/ws/auctions/{auction.pk}/")
        assert (await receive(comm))["seq"] == 1
        monkeypatch.setattr(publish, "publish_events", lossy)
        await sync_to_async(services.bid_submit, thread_sensitive=False)(auction_id=auction.pk, user=alice, amount=10)
        await decide(auction.pk)
        await sync_to_async(services.bid_submit, thread_sensitive=False)(auction_id=auction.pk, user=bob, amount=11)
        await decide(auction.pk)
        got = [(await receive(comm))["event"]["seq"] for _ in range(2)]
        assert dropped == [2] and got == [2, 3]
        await comm.disconnect()

    run(scenario())


def test_the_outbid_user_hears_it_in_the_room_and_the_lobby(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction()
    services.bid_submit(auction_id=auction.pk, user=alice, amount=10)
    services.bids_decide_pending(auction_id=auction.pk)

    async def scenario():
        room = await connect(f"/ws/auctions/{auction.pk}/", token=token_for(alice))
        await receive(room)
        lobby = await connect("/ws/lobby/", token=token_for(alice))
        snap = await receive(lobby)
        assert snap["type"] == "snapshot" and [a["id"] for a in snap["auctions"]] == [auction.pk]
        await sync_to_async(services.bid_submit, thread_sensitive=False)(auction_id=auction.pk, user=bob, amount=30)
        await decide(auction.pk)
        outbid = {"type": "outbid", "auction_id": auction.pk, "current_price": 30}
        assert await receive_until(room, "outbid") == outbid
        assert await receive_until(lobby, "outbid") == outbid
        change = await receive_until(lobby, "auction")
        assert change["auction"]["current_price"] == 30 and change["auction"]["leader"] == "bob"
        for c in (room, lobby):
            await c.disconnect()

    run(scenario())


def test_a_socket_that_falls_too_far_behind_is_cut_off_to_resume(make_auction, settings):
    """A client that stops reading must not grow server memory: its backlog is bounded, and when
    it overflows the socket is closed with 1013 so the client reconnects and resumes."""
    from realtime.hub import hub

    settings.WS_BUFFER_MESSAGES = 5
    auction = make_auction()
    group = auction_group(auction.pk)
    reading = asyncio.Event()

    def stalled(inner):
        # The server's transport is full: every frame after the snapshot waits for the client.
        async def app(scope, receive, send):
            texts = []

            async def send_when_read(message):
                if message["type"] == "websocket.send":
                    if texts:
                        await reading.wait()
                    texts.append(message["text"])
                await send(message)

            await inner(scope, receive, send_when_read)
        return app

    async def scenario():
        comm = WebsocketCommunicator(stalled(application), f"/ws/auctions/{auction.pk}/")
        assert (await comm.connect(timeout=5))[0]
        assert (await receive(comm))["type"] == "snapshot"
        layer = get_channel_layer()
        for seq in range(2, 40):
            message = {"type": "auction.events", "group": group, "auction_id": auction.pk, "seq": seq,
                       "texts": [json.dumps({"seq": seq})]}
            await layer.group_send(group, message)
        member = next(iter(hub().groups[group]))
        for _ in range(100):
            if member.outbox.closed:
                break
            await asyncio.sleep(0.05)
        assert member.outbox.closed and member.outbox.backlog <= 5
        reading.set()  # the client reads again (or its connection dies): what is left goes out
        frames_after = []
        while True:
            out = await comm.receive_output(timeout=5)
            if out["type"] == "websocket.close":
                assert out["code"] == 1013
                break
            frames_after.append(json.loads(out["text"])["seq"])
        assert frames_after == [2], "the frames behind the stalled one were dropped, not kept"

    run(scenario())


def test_sockets_of_one_process_share_one_subscription_and_each_gets_every_event(make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction()
    group = auction_group(auction.pk)

    async def scenario():
        socks = [await connect(f"/ws/auctions/{auction.pk}/") for _ in range(3)]
        for comm in socks:
            assert (await receive(comm))["seq"] == 1
        layer = get_channel_layer()._get_layer()
        assert len(layer.groups[layer._get_group_channel_name(group)]) == 1, "one channel per process"
        await sync_to_async(services.bid_submit, thread_sensitive=False)(auction_id=auction.pk, user=alice, amount=10)
        await decide(auction.pk)
        for comm in socks:
            frame = await receive(comm)
            assert frame["type"] == "event" and frame["event"]["seq"] == 2
            assert await comm.receive_nothing(0.2)
        for comm in socks:
            await comm.disconnect()
        assert layer._get_group_channel_name(group) not in layer.groups

    run(scenario())


async def _watch_then_lose_the_next_event(auction, bidder, monkeypatch) -> WebsocketCommunicator:
    """A socket watches from seq 1; the next decided bid's event never reaches the channel layer
    (as in a Redis blip); only the log has it."""
    from realtime import publish

    comm = await connect(f"/ws/auctions/{auction.pk}/")
    assert (await receive(comm))["seq"] == 1
    monkeypatch.setattr(publish, "publish_events", lambda auction_id, events: None)
    await sync_to_async(services.bid_submit, thread_sensitive=False)(auction_id=auction.pk, user=bidder, amount=10)
    await decide(auction.pk)
    return comm


def test_a_lost_last_event_of_a_quiet_auction_is_refilled_by_the_audit(make_user, make_auction, monkeypatch, settings):
    """The pub/sub layer drops silently across a Redis blip; if that was the auction's last event,
    no later seq reveals the gap. The hub's audit compares the log with what sockets got."""
    settings.WS_AUDIT_S = 0.2
    alice = make_user("alice")
    auction = make_auction()

    async def scenario():
        comm = await _watch_then_lose_the_next_event(auction, alice, monkeypatch)
        frame = await receive(comm, timeout=5)
        assert frame["type"] == "event" and frame["event"]["seq"] == 2
        assert await comm.receive_nothing(0.6), "refilled once, not on every audit"
        late = await connect(f"/ws/auctions/{auction.pk}/")
        assert (await receive(late))["seq"] == 2, "the process's shared snapshot went with the lost event"
        for c in (comm, late):
            await c.disconnect()

    run(scenario())


def test_when_the_process_buffer_overflows_sockets_refill_from_the_log(make_user, make_auction, monkeypatch):
    from realtime.hub import hub

    alice = make_user("alice")
    auction = make_auction()

    async def scenario():
        comm = await _watch_then_lose_the_next_event(auction, alice, monkeypatch)
        assert await comm.receive_nothing(0.2)
        # What the bounded layer puts in the process's queue in place of what it dropped.
        await get_channel_layer().send(hub().channel, {"type": "layer.overflow"})
        frame = await receive(comm)
        assert frame["type"] == "event" and frame["event"]["seq"] == 2
        await comm.disconnect()

    run(scenario())


def test_anonymous_watchers_share_a_snapshot_until_an_event_moves_past_it(make_user, make_auction, monkeypatch):
    from realtime import snapshots

    alice = make_user("alice")
    auction = make_auction()
    reads = []
    real = snapshots.auction_snapshot

    def counted(**kwargs):
        reads.append(kwargs["viewer"])
        return real(**kwargs)

    monkeypatch.setattr(snapshots, "auction_snapshot", counted)

    async def scenario():
        a = await connect(f"/ws/auctions/{auction.pk}/")
        b = await connect(f"/ws/auctions/{auction.pk}/")
        assert [(await receive(c))["seq"] for c in (a, b)] == [1, 1]
        assert reads == [None], "the second anonymous watcher took the process's snapshot"
        await sync_to_async(services.bid_submit, thread_sensitive=False)(auction_id=auction.pk, user=alice, amount=10)
        await decide(auction.pk)
        assert [(await receive(c))["event"]["seq"] for c in (a, b)] == [2, 2]
        c = await connect(f"/ws/auctions/{auction.pk}/")
        snap = await receive(c)
        assert snap["seq"] == 2 and snap["auction"]["current_price"] == 10, "never a snapshot older than an event"
        assert len(reads) == 2
        mine = await connect(f"/ws/auctions/{auction.pk}/", token=token_for(alice))
        assert (await receive(mine))["auction"]["is_leader"] is True, "a signed-in viewer reads their own"
        for comm in (a, b, c, mine):
            await comm.disconnect()

    run(scenario())


def test_when_the_channel_layer_is_away_a_new_socket_is_told_to_come_back_later(make_auction, monkeypatch):
    from realtime.hub import Hub

    auction = make_auction()

    async def unreachable(self, member, groups):
        raise ConnectionError("Redis is restarting")

    monkeypatch.setattr(Hub, "join", unreachable)

    async def scenario():
        for path in (f"/ws/auctions/{auction.pk}/", "/ws/lobby/"):
            comm = WebsocketCommunicator(application, path)
            connected, _ = await comm.connect(timeout=5)
            assert connected
            out = await comm.receive_output(timeout=5)
            assert out == {"type": "websocket.close", "code": 1013}

    run(scenario())


def test_the_bounded_buffer_keeps_at_most_its_capacity():
    from realtime.layer import _BoundedQueue

    queue = _BoundedQueue(3, b"overflow")
    for item in (b"1", b"2", b"3"):
        queue.put_nowait(item)
    queue.put_nowait(b"4")
    queue.put_nowait(b"5")
    assert queue.qsize() == 1 and queue.get_nowait() == b"overflow"
    assert queue.empty()

"""Socket bids stored in batches (auctions/intake_batch.py, auctions.services.bids_submit_many): each
bid of a batch is answered exactly as it would be alone, in the contract's order of checks, and
an auction's bids of one batch take consecutive positions in arrival order."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from auctions import services
from auctions.models import Bid
from core.errors import ServiceError
from tasks import doorbell
from tests import invariants
from tests.test_ws import connect, receive, run, token_for


def _code(answer) -> str:
    return answer.code if isinstance(answer, ServiceError) else ("created" if answer.created else "repeat")


def test_each_bid_of_a_mixed_batch_gets_its_own_answer(make_user, make_auction, monkeypatch, settings,
                                                      django_capture_on_commit_callbacks):
    settings.BID_RATE_PER_SECOND, settings.BID_RATE_BURST = 1.0, 2
    rung = []
    monkeypatch.setattr(doorbell, "ring", lambda auction_id, **_kw: rung.append(auction_id))
    monkeypatch.setattr(doorbell, "ring_many", rung.extend)
    seller, alice, bob, carol = (make_user(n) for n in ("seller", "alice", "bob", "carol"))
    one, two = make_auction(seller=seller), make_auction(seller=seller)
    ended = make_auction(seller=seller, lasts=60)
    services.bid_submit(auction_id=one.pk, user=carol, amount=5, client_bid_id="before")
    ended.status = "ended"
    ended.save(update_fields=["status"])
    rung.clear()
    S = services.Submission
    with django_capture_on_commit_callbacks(execute=True):
        answers = services.bids_submit_many([
            S(one.pk, alice, 10, client_bid_id="a1", rate_limited=True),
            S(two.pk, bob, 10, client_bid_id="b1", rate_limited=True),
            S(one.pk, bob, 0, client_bid_id="b2"),  # invalid amount
            S(one.pk, seller, 10),  # the seller
            S(999_999, alice, 10),  # no such auction
            S(ended.pk, alice, 10),  # ended
            S(one.pk, carol, 10, client_bid_id="before"),  # a repeat of a stored bid
            S(one.pk, alice, 12, client_bid_id="a1"),  # a repeat within the batch
            S(one.pk, alice, 11, client_bid_id="a2", rate_limited=True),
            S(one.pk, alice, 13, client_bid_id="a3", rate_limited=True),  # the third within the burst of 2
            S(one.pk, bob, 11, max_amount=5),  # max below amount
            S(one.pk, bob, 14, client_bid_id="\x00"),  # client_bid_id the database cannot store
            S(two.pk, carol, 11),
        ])
    assert [_code(a) for a in answers] == [
        "created", "created", "invalid_amount", "seller_cannot_bid", "not_found", "auction_ended", "repeat",
        "repeat", "created", "rate_limited", "invalid_amount", "invalid_field", "created"]
    assert answers[7].bid.pk == answers[0].bid.pk and answers[7].bid.amount == 10  # the original, unchanged
    assert answers[6].bid.client_bid_id == "before"
    # Consecutive positions per auction in the batch's order; one doorbell per auction.
    assert list(Bid.objects.filter(auction=one).order_by("position").values_list("position", "client_bid_id")) == [
        (1, "before"), (2, "a1"), (3, "a2")]
    assert [answers[0].bid.position, answers[8].bid.position] == [2, 3]
    assert list(Bid.objects.filter(auction=two).order_by("position").values_list("position", "bidder__username")) \
        == [(1, "bob"), (2, "carol")]
    assert sorted(rung) == sorted([one.pk, two.pk])
    assert not Bid.objects.filter(auction=ended).exists()


def test_an_end_among_a_batchs_bids_takes_those_before_it_and_refuses_those_after(make_user, make_auction):
    """One statement stores an auction's bids of a batch only if the auction takes all of them;
    otherwise each is received on its own and the end falls where their times say."""
    from datetime import timedelta

    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(lasts=60, extend_window_s=0)
    S = services.Submission
    answers = services.bids_submit_many([
        S(auction.pk, alice, 10, received_at=auction.ends_at - timedelta(milliseconds=2)),
        S(auction.pk, bob, 11, received_at=auction.ends_at - timedelta(milliseconds=1)),
        S(auction.pk, alice, 12, received_at=auction.ends_at),
    ])
    assert [_code(a) for a in answers] == ["created", "created", "auction_ended"]
    assert list(Bid.objects.filter(auction=auction).order_by("position").values_list("position", "amount")) == [
        (1, 10), (2, 11)]


@pytest.fixture
def slow_first_batch(monkeypatch) -> list[int]:
    """The sizes of the intake batches stored from now on; the first is slow, so that the bids
    arriving meanwhile pile up for the next."""
    from auctions import intake_batch

    batches: list[int] = []
    real = intake_batch._store

    def spy(submissions):
        batches.append(len(submissions))
        if len(batches) == 1:
            time.sleep(0.3)
        return real(submissions)

    monkeypatch.setattr(intake_batch, "_store", spy)
    return batches


@pytest.mark.usefixtures("transactional_db")  # the sockets' threads read the database
def test_sockets_bidding_at_once_are_stored_in_batches_each_answered_in_order(make_user, make_auction,
                                                                              slow_first_batch):
    users = [make_user(f"bidder{k}") for k in range(12)]
    auction = make_auction(min_increment=1)
    batches = slow_first_batch

    async def scenario():
        sockets = [await connect(f"/ws/auctions/{auction.pk}/", token=token_for(u)) for u in users]
        for comm in sockets:
            assert (await receive(comm))["type"] == "snapshot"
        for k, comm in enumerate(sockets):
            for n in range(2):  # a socket may send its next bid before the first is answered
                await comm.send_json_to({"type": "bid", "amount": 10 + 2 * k + n, "client_bid_id": f"c{k}-{n}"})
        for k, comm in enumerate(sockets):
            queued = []
            while len(queued) < 2:
                frame = await receive(comm)
                if frame["type"] == "bid.queued":
                    queued.append(frame["bid"])
            assert [b["client_bid_id"] for b in queued] == [f"c{k}-0", f"c{k}-1"]
            assert queued[0]["position"] < queued[1]["position"]
        await asyncio.gather(*(comm.disconnect() for comm in sockets))

    run(scenario())
    assert sum(batches) == 24 and max(batches) > 1 and len(batches) < 24, batches
    positions = sorted(Bid.objects.filter(auction=auction).values_list("position", flat=True))
    assert positions == list(range(1, 25))
    invariants.assert_coins_conserved()


async def _post_through_the_server_handler(handler, path: str, token: str, payload: dict) -> tuple[int, dict]:
    """One request through core.asgi_handler as uvicorn hands it over: the view runs on the
    handler's request thread, with the serving loop running in this one."""
    body = json.dumps(payload).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {token}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    read = asyncio.Event()

    async def receive() -> dict:
        if not read.is_set():
            read.set()
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected

    messages = []

    async def send(message: dict) -> None:
        messages.append(message)

    await handler(scope, receive, send)
    return messages[0]["status"], json.loads(b"".join(m.get("body", b"") for m in messages[1:]))


@pytest.mark.usefixtures("transactional_db")  # the request threads and the batch's thread read the database
def test_rest_bids_arriving_at_once_are_stored_in_batches(make_user, make_auction, slow_first_batch):
    """Under the server's handler a REST bid joins the process's intake batches, as socket bids
    do; each request still gets its own bid back, 202, as it would alone."""
    from core.asgi_handler import PooledThreadsASGIHandler

    users = [make_user(f"bidder{k}") for k in range(12)]
    auction = make_auction(min_increment=1)
    batches = slow_first_batch
    handler = PooledThreadsASGIHandler()
    path = f"/api/auctions/{auction.pk}/bids"

    async def scenario():
        return await asyncio.gather(*(
            _post_through_the_server_handler(handler, path, token_for(u), {"amount": 10 + k, "client_bid_id": f"r{k}"})
            for k, u in enumerate(users)))

    answers = run(scenario())
    assert [status for status, _ in answers] == [202] * 12, answers
    assert [(bid["client_bid_id"], bid["amount"], bid["status"]) for _, bid in answers] == [
        (f"r{k}", 10 + k, "queued") for k in range(12)]
    assert sum(batches) == 12 and max(batches) > 1 and len(batches) < 12, batches
    assert sorted(bid["position"] for _, bid in answers) == list(range(1, 13))
    stored = Bid.objects.filter(auction=auction)
    assert sorted(stored.values_list("channel", flat=True).distinct()) == ["rest"]
    invariants.assert_coins_conserved()

"""auctions.intake against real concurrency: two connections, a real lock wait, real commits.

On PostgreSQL the bid is received by one statement that relies on the server re-checking the
Intake row it waited for; these tests make that wait happen rather than trust it."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError

from auctions import intake, services
from auctions.models import Bid, Intake
from core import clock
from core.errors import Conflict
from tests import invariants
from tests.locks import in_thread, wait_until_blocked


def test_a_bid_that_waited_for_an_end_is_refused_when_the_end_commits(transactional_db, make_user, make_auction,
                                                                      monkeypatch):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(lasts=60, extend_window_s=0)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=20)
    ends_at = auction.ends_at

    bid_started = threading.Event()
    real_close = intake.close

    def close_then_let_a_bid_wait(auction_id: int, *args, **kwargs) -> None:
        # The end holds the Intake lock here, inside its transaction: a bid now has to wait.
        real_close(auction_id, *args, **kwargs)
        bid_started.set()
        wait_until_blocked("the bid")

    monkeypatch.setattr(intake, "close", close_then_let_a_bid_wait)
    the_end, ended = in_thread(lambda: services.auction_end(auction_id=auction.pk, now=ends_at))
    assert bid_started.wait(10), ended
    # Received just before the end (by its own clock), it reaches the Intake lock only after.
    a_bid, refused = in_thread(lambda: services.bid_submit(auction_id=auction.pk, user=bob, amount=30))
    the_end.join(20)
    a_bid.join(20)

    assert ended.get("value") is True, (ended, refused)
    assert isinstance(refused.get("error"), Conflict) and refused["error"].code == "auction_ended", refused
    assert list(Bid.objects.filter(auction=auction).values_list("position", flat=True)) == [1]
    assert Intake.objects.get(pk=auction.pk).last_position == 1
    auction.refresh_from_db()
    assert auction.winner == alice and auction.final_price == 20
    invariants.assert_coins_conserved()


def test_bids_racing_for_one_auction_get_every_position_once(transactional_db, make_user, make_auction):
    users = [make_user(f"u{i}") for i in range(8)]
    auction = make_auction(lasts=120, starting_price=1, min_increment=1)

    def submit_many(user) -> list[int]:
        return [services.bid_submit(auction_id=auction.pk, user=user, amount=1 + k, client_bid_id=f"c{k}").bid.position
                for k in range(15)]

    runs = [in_thread(lambda u=u: submit_many(u)) for u in users]
    for thread, _ in runs:
        thread.join(60)
    for _, out in runs:
        assert "error" not in out, out
    positions = sorted(p for _, out in runs for p in out["value"])
    assert positions == list(range(1, 8 * 15 + 1))
    invariants.assert_positions_contiguous(auction)


def test_a_repeated_client_bid_id_stores_nothing_and_answers_the_original(transactional_db, make_user,
                                                                           make_auction):
    alice = make_user("alice")
    auction = make_auction(lasts=60)
    first = services.bid_submit(auction_id=auction.pk, user=alice, amount=20, client_bid_id="same")
    # The duplicate reaches the insert (its pre-check is skipped) and must not burn a position.
    again = intake.receive(auction_id=auction.pk, bidder_id=alice.pk, amount=25, max_amount=None,
                           client_bid_id="other", channel="rest", received_at=first.bid.received_at)
    with pytest.raises(IntegrityError):
        intake.receive(auction_id=auction.pk, bidder_id=alice.pk, amount=30, max_amount=None,
                       client_bid_id="same", channel="rest", received_at=first.bid.received_at)
    assert (first.bid.position, again.position) == (1, 2)
    assert Intake.objects.get(pk=auction.pk).last_position == 2
    assert Bid.objects.filter(auction=auction).count() == 2


def _unsaved(auction, user, amount: int, client_bid_id: str | None = None) -> Bid:
    return Bid(auction_id=auction.pk, bidder_id=user.pk, amount=amount, client_bid_id=client_bid_id,
               channel="ws", received_at=clock.now(), status=Bid.Status.QUEUED)


def test_batches_sharing_auctions_in_any_order_take_every_position_once(transactional_db, make_user, make_auction):
    """Batches of several auctions' bids, listing the same auctions in different orders, at once:
    each auction's Intake row is locked by one batch at a time, and none may deadlock."""
    import random

    users = [make_user(f"u{i}") for i in range(6)]
    auctions = [make_auction(lasts=120) for _ in range(4)]

    def batches(k: int) -> None:
        rng = random.Random(k)
        for round_ in range(20):
            order = rng.sample(auctions, len(auctions))
            answers = intake.receive_many([_unsaved(a, users[k], 10 + round_) for a in order for _ in range(2)])
            assert all(isinstance(a, Bid) for a in answers), answers

    runs = [in_thread(lambda k=k: batches(k)) for k in range(len(users))]
    for thread, _ in runs:
        thread.join(120)
    for _, out in runs:
        assert "error" not in out, out
    for auction in auctions:
        invariants.assert_positions_contiguous(auction)
        assert Intake.objects.get(pk=auction.pk).last_position == len(users) * 20 * 2


def test_a_batch_stores_the_open_auctions_bids_and_answers_each_of_the_others(transactional_db, make_user,
                                                                             make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    live, closed = make_auction(lasts=60), make_auction(lasts=60)
    Intake.objects.filter(pk=closed.pk).update(closed=True)  # an end or cancel is committing
    taken = services.bid_submit(auction_id=live.pk, user=alice, amount=20, client_bid_id="taken")

    answers = intake.receive_many([
        _unsaved(live, bob, 21, "b1"),
        _unsaved(closed, bob, 21, "b2"),
        _unsaved(live, alice, 22, "taken"),  # a duplicate: the one statement fails, each goes alone
        _unsaved(live, alice, 23, "a2"),
    ])

    assert [a if isinstance(a, str) or a is None else a.position for a in answers] == [2, None, intake.DUPLICATE, 3]
    assert list(Bid.objects.filter(auction=live).order_by("position").values_list("position", "client_bid_id")) == [
        (1, "taken"), (2, "b1"), (3, "a2")]
    assert Intake.objects.get(pk=live.pk).last_position == 3
    assert not Bid.objects.filter(auction=closed).exists()
    assert taken.bid.position == 1

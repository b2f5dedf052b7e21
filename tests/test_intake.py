"""auctions.intake against real concurrency: two connections, a real lock wait, real commits.

On PostgreSQL the bid is received by one statement that relies on the server re-checking the
Intake row it waited for; these tests make that wait happen rather than trust it."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError

from auctions import intake, services
from auctions.models import Bid, Intake
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

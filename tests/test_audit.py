"""auctions.audit, the invariant checker the suite, the benchmarks, the fault suite and operators
share: it passes on what the services produce, and each check catches the corruption it is for."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from auctions import audit, services
from auctions.models import Auction, AuctionEvent, Bid
from core.models import Account, Hold, Transfer


@pytest.fixture
def market(make_user, make_auction):
    """Auctions in every state the services produce, each reached through the services."""
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    make_user("seller")
    live = make_auction(seller="seller", starting_price=10, min_increment=5, lasts=600)
    for user, amount, max_amount in ((alice, 10, 50), (bob, 20, None), (carol, 60, None), (bob, 30, None)):
        services.bid_submit(auction_id=live.pk, user=user, amount=amount, max_amount=max_amount)
    services.bids_decide_pending(auction_id=live.pk)

    sold = make_auction(seller="seller", extend_window_s=0)
    services.bid_submit(auction_id=sold.pk, user=alice, amount=40)
    services.bid_submit(auction_id=sold.pk, user=bob, amount=45)
    services.auction_end(auction_id=sold.pk, now=sold.ends_at + timedelta(milliseconds=300))

    bought = make_auction(seller="seller", buy_now_price=200)
    services.bid_submit(auction_id=bought.pk, user=carol, amount=200)
    services.bids_decide_pending(auction_id=bought.pk)

    cancelled = make_auction()
    services.bid_submit(auction_id=cancelled.pk, user=alice, amount=15)
    services.auction_cancel(auction_id=cancelled.pk)

    unsold = make_auction(reserve_price=500, extend_window_s=0)
    services.bid_submit(auction_id=unsold.pk, user=bob, amount=20)
    services.auction_end(auction_id=unsold.pk, now=unsold.ends_at + timedelta(seconds=1))

    return {"live": live, "sold": sold, "bought": bought, "cancelled": cancelled, "unsold": unsold,
            "alice": alice, "bob": bob}


def _failed(**kwargs) -> set[str]:
    return {c.name for c in audit.audit(**kwargs).failed()}


def test_what_the_services_produce_passes_every_check(market):
    statuses = set(Auction.objects.values_list("status", flat=True))
    assert statuses == {"live", "ended", "cancelled"}
    report = audit.audit()
    assert report.ok, report.lines()
    checked = {c.name: c.checked for c in report.checks}
    assert set(checked) == {"decided", "streams", "prices", "ledger", "holds", "settlements", "ends"}
    assert checked["decided"] == Bid.objects.count() and checked["streams"] == 5
    assert all(n > 0 for n in checked.values()), checked


def test_a_bid_left_queued_fails_unless_bids_may_be_in_flight(market):
    services.bid_submit(auction_id=market["live"].pk, user=market["alice"], amount=500)
    assert _failed() == {"decided"}
    assert _failed(allow_queued=True) == set()


def test_an_accepted_bid_turned_rejected_is_caught(market):
    bid = Bid.objects.filter(status="accepted", seq__isnull=False).first()
    Bid.objects.filter(pk=bid.pk).update(status="rejected", reason="below_minimum", seq=None)
    assert _failed() == {"decided"}


def test_an_accepted_bid_pointing_at_another_event_is_caught(market):
    bid = Bid.objects.filter(status="accepted", seq__isnull=False).first()
    Bid.objects.filter(pk=bid.pk).update(seq=bid.seq + 1)
    assert _failed() == {"decided"}


def test_a_missing_event_is_a_gap(market):
    live = market["live"]
    AuctionEvent.objects.filter(auction=live, seq=2).delete()
    assert "streams" in _failed()


def test_a_price_that_does_not_rise_is_caught(market):
    events = list(AuctionEvent.objects.filter(auction=market["live"], type="bid.accepted").order_by("seq"))
    last = events[-1]
    last.data = {**last.data, "current_price": events[-2].data["current_price"]}
    last.save(update_fields=["data"])
    assert _failed() == {"prices"}


def test_a_coin_from_nowhere_unbalances_the_ledger(market):
    Account.objects.filter(user=market["alice"]).update(balance=F("balance") + 5)
    assert _failed() == {"ledger"}


def test_a_hold_that_is_not_the_leaders_max_is_caught(market):
    Hold.objects.filter(auction_id=market["live"].pk, active=True).update(amount=F("amount") - 1)
    assert "holds" in _failed()


def test_a_winner_paying_the_wrong_price_is_caught(market):
    Transfer.objects.filter(auction_id=market["sold"].pk, kind="settlement").update(amount=F("amount") + 1)
    assert "settlements" in _failed()


def test_an_end_before_ends_at_is_caught(market):
    sold = market["sold"]
    Auction.objects.filter(pk=sold.pk).update(ends_at=sold.ends_at + timedelta(minutes=5))
    assert _failed() == {"ends"}


def test_a_live_auction_long_past_its_end_is_caught(market):
    live = market["live"]
    assert _failed(now=live.ends_at + audit.OVERDUE_AFTER / 2) == set()
    assert _failed(now=live.ends_at + audit.OVERDUE_AFTER * 2) == {"ends"}


def test_auditing_some_auctions_leaves_the_others_alone(market):
    AuctionEvent.objects.filter(auction=market["live"], seq=2).delete()
    assert _failed(auction_ids=[market["sold"].pk, market["unsold"].pk]) == set()
    assert "streams" in _failed(auction_ids=[market["live"].pk])


def test_the_command_prints_the_report_and_fails_on_a_broken_invariant(market, capsys):
    call_command("audit")
    out = capsys.readouterr().out
    assert "PASS  ledger" in out and "FAIL" not in out
    Account.objects.filter(user=market["bob"]).update(balance=F("balance") - 3)
    with pytest.raises(CommandError, match="ledger"):
        call_command("audit", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["ledger"]

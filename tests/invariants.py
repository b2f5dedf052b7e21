"""Checks of the properties in ARCHITECTURE.md that many tests share. Each asserts what a
careful auditor would check by reading the tables."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from auctions import rules, selectors
from auctions.models import Auction, AuctionEvent, Bid
from core import ledger
from core.models import Account, Hold


def assert_stream_gap_free(auction: Auction) -> list[AuctionEvent]:
    """P1: seq 1..N, no gap, no duplicate, and Auction.seq is the last one."""
    events = list(AuctionEvent.objects.filter(auction=auction).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    auction.refresh_from_db()
    assert auction.seq == len(events)
    return events


def assert_positions_contiguous(auction: Auction) -> list[Bid]:
    bids = list(Bid.objects.filter(auction=auction).order_by("position"))
    assert [b.position for b in bids] == list(range(1, len(bids) + 1))
    return bids


def assert_decided_once(auction: Auction) -> None:
    """P2: each accepted bid has exactly one own (non-proxy) bid.accepted event, whose seq the
    bid records; rejected bids have none; bid_count counts every bid.accepted event."""
    events = assert_stream_gap_free(auction)
    accepted_events = [e for e in events if e.type == "bid.accepted"]
    own: dict[int, list[int]] = {}
    for e in accepted_events:
        if not e.data["proxy"]:
            own.setdefault(e.data["bid_id"], []).append(e.seq)
    for bid in Bid.objects.filter(auction=auction):
        assert bid.status != Bid.Status.QUEUED, f"bid {bid.pk} never decided"
        if bid.status == Bid.Status.REJECTED:
            assert bid.pk not in own
            assert bid.seq is None
        elif bid.seq is not None:
            assert own.get(bid.pk) == [bid.seq]
    assert auction.bid_count == len(accepted_events)
    assert sum(1 for e in events if e.type == "auction.ended") <= 1


def assert_replay_matches(auction: Auction) -> None:
    """Anyone can replay an auction from its bids: folding the rules over the bids in position
    order gives the same decisions, price and leader the platform recorded (funds permitting)."""
    terms = selectors.terms_of(auction)
    planned_end = auction.hard_close_at - timedelta(seconds=settings.MAX_EXTENSION)
    state = rules.State(status=rules.LIVE, ends_at=planned_end)
    for bid in Bid.objects.filter(auction=auction).order_by("position"):
        request = rules.BidRequest(bid.pk, bid.bidder_id, bid.amount, bid.max_amount, bid.position, bid.received_at)
        available = 10**13 if bid.reason != rules.INSUFFICIENT_FUNDS else 0
        decision = rules.decide_bid(terms, state, request, available=available)
        expected = "accepted" if decision.accepted else "rejected"
        assert bid.status == expected, f"bid at position {bid.position}: {bid.status} != replay {expected}"
        if decision.accepted:
            state = decision.state
    auction.refresh_from_db()
    assert auction.current_price == state.current_price
    assert auction.leader_id == state.leader_id


def assert_coins_conserved() -> None:
    """P4: the ledger sums to zero; no available balance is negative; account.held is the sum of
    its active holds; every balance is what its transfers add up to."""
    assert ledger.ledger_sum() == 0
    for a in ledger.accounts_audit():
        pk, kind, balance, held, active_holds, credited, debited = (
            a.pk, a.kind, a.balance, a.held, a.active_holds, a.credited, a.debited)
        assert kind == Account.Kind.MINT or balance >= held, f"account {pk} available < 0"
        assert held == active_holds, f"account {pk} held {held} != active holds {active_holds}"
        assert balance == credited - debited, f"account {pk} balance {balance} != ledger {credited - debited}"


def assert_holds_match_leader(auction: Auction) -> None:
    """P4: while live, the active holds on an auction are exactly the leader's max; once final, none."""
    auction.refresh_from_db()
    holds = list(Hold.objects.filter(auction_id=auction.pk, active=True))
    if auction.is_final or auction.leader_id is None:
        assert holds == []
        return
    leader_max = auction.participants.get(user_id=auction.leader_id).max_amount
    assert [(h.account.user_id, h.amount) for h in holds] == [(auction.leader_id, leader_max)]


def assert_audit_clean(**kwargs) -> None:
    """Every invariant auctions.audit checks (the one the benchmarks and operators run) holds."""
    from auctions import audit

    report = audit.audit(**kwargs)
    assert report.ok, "\n".join(report.lines())

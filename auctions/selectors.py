"""Reads: what the API, the sockets and the admin show. Shapes follow CONTRACT.md exactly."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from auctions import rules
from auctions.models import Auction, AuctionEvent, Bid, Participant
from core import clock
from core.models import User
from core.timefmt import iso


def terms_of(auction: Auction) -> rules.Terms:
    return rules.Terms(
        starting_price=auction.starting_price,
        min_increment=auction.min_increment,
        reserve_price=auction.reserve_price,
        buy_now_price=auction.buy_now_price,
        extend_window_s=auction.extend_window_s,
        extend_by_s=auction.extend_by_s,
        hard_close_at=auction.hard_close_at,
        seller_id=auction.seller_id,
    )


def _username(user_id: int | None, names: dict[int, str] | None = None) -> str | None:
    if user_id is None:
        return None
    if names is not None and user_id in names:
        return names[user_id]
    return User.objects.filter(pk=user_id).values_list("username", flat=True).first()


def auction_queryset() -> QuerySet[Auction]:
    return Auction.objects.select_related("seller", "leader", "winner")


def auction_get(auction_id: int) -> Auction | None:
    return auction_queryset().filter(pk=auction_id).first()


def auction_list(*, status: str | None = None, limit: int = 200) -> list[Auction]:
    qs = auction_queryset()
    if status:
        qs = qs.filter(status=status)
    return list(qs.order_by("-id")[:limit])


def auction_data(auction: Auction, *, viewer: User | None = None,
                 names: dict[int, str] | None = None) -> dict[str, Any]:
    """The contract's `auction` object. `viewer` decides my_max/is_leader and staff-only fields.
    `names` (user id -> username), when it holds the seller, leader and winner, saves reading
    them (the bid decider has them at hand)."""

    def name(user_id: int | None, related: str) -> str | None:
        if user_id is None:
            return None
        if names is not None and user_id in names:
            return names[user_id]
        return getattr(auction, related).username

    terms = terms_of(auction)
    state = rules.State(
        status=auction.status, ends_at=auction.ends_at, current_price=auction.current_price,
        leader_id=auction.leader_id, bid_count=auction.bid_count,
    )
    authenticated = viewer is not None and viewer.is_authenticated
    my_max = None
    if authenticated:
        my_max = (
            Participant.objects.filter(auction_id=auction.pk, user_id=viewer.pk)
            .values_list("max_amount", flat=True)
            .first()
        )
    data: dict[str, Any] = {
        "id": auction.pk,
        "title": auction.title,
        "description": auction.description,
        "status": auction.status,
        "seller": name(auction.seller_id, "seller"),
        "starts_at": iso(auction.starts_at),
        "ends_at": iso(auction.ends_at),
        "starting_price": auction.starting_price,
        "min_increment": auction.min_increment,
        "buy_now_price": auction.buy_now_price,
        "reserve_met": rules.reserve_met(terms, auction.current_price),
        "extend_window_s": auction.extend_window_s,
        "extend_by_s": auction.extend_by_s,
        "current_price": auction.current_price,
        "leader": name(auction.leader_id, "leader"),
        "min_next_bid": rules.min_next_bid(terms, state),
        "bid_count": auction.bid_count,
        "seq": auction.seq,
        "winner": name(auction.winner_id, "winner"),
        "final_price": auction.final_price,
        "server_time": iso(clock.now()),
        "my_max": my_max,
        "is_leader": bool(authenticated and auction.leader_id == viewer.pk),
    }
    if authenticated and viewer.is_staff:
        data["reserve_price"] = auction.reserve_price
    return data


def bid_data(bid: Bid, *, viewer: User | None = None, auction: Auction | None = None) -> dict[str, Any]:
    auction = auction or bid.auction
    show_max = (viewer is not None and viewer.pk == bid.bidder_id) or auction.is_final
    return {
        "bid_id": bid.pk,
        "client_bid_id": bid.client_bid_id,
        "auction_id": bid.auction_id,
        "bidder": bid.bidder.username,
        "amount": bid.amount,
        "max_amount": (bid.max_amount if bid.max_amount is not None else bid.amount) if show_max else None,
        "position": bid.position,
        "status": bid.status,
        "reason": bid.reason,
        "seq": bid.seq,
        "created_at": iso(bid.received_at),
        "decided_at": iso(bid.decided_at),
    }


def bid_get_for(*, bid_id: int, user: User) -> Bid | None:
    return Bid.objects.select_related("auction", "bidder").filter(pk=bid_id, bidder=user).first()


def user_bids(*, user: User, limit: int = 200) -> list[dict[str, Any]]:
    bids = Bid.objects.select_related("auction", "bidder").filter(bidder=user).order_by("-id")[:limit]
    return [bid_data(b, viewer=user) for b in bids]


def event_data(event: AuctionEvent) -> dict[str, Any]:
    return {"seq": event.seq, "type": event.type, "at": iso(event.at), "data": event.data}


def events_after(*, auction_id: int, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    events = AuctionEvent.objects.filter(auction_id=auction_id, seq__gt=after).order_by("seq")[:limit]
    return [event_data(e) for e in events]


def leaderboard(*, auction: Auction) -> list[dict[str, Any]]:
    rows = list(
        Participant.objects.filter(auction_id=auction.pk, shown_amount__isnull=False).select_related("user")
    )
    standings = {
        p.user_id: rules.Standing(p.user_id, p.max_amount, p.max_bid_id, p.max_position, p.own_amount, p.shown_amount)
        for p in rows
    }
    names = {p.user_id: p.user.username for p in rows}
    state = rules.State(
        status=auction.status, ends_at=auction.ends_at, leader_id=auction.leader_id, standings=standings
    )
    return [
        {"rank": rank, "username": names[s.user_id], "amount": s.shown_amount}
        for rank, s in enumerate(rules.leaderboard(state), start=1)
    ]


def usernames(user_ids: Iterable[int]) -> dict[int, str]:
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    return dict(User.objects.filter(pk__in=ids).values_list("pk", "username"))

"""What a socket shows on connect, read so that it reflects exactly one seq of the stream."""

from __future__ import annotations

from typing import Any

from auctions import selectors
from auctions.models import Auction
from core import clock
from core.models import User
from core.timefmt import iso

MAX_RESUME = 1000


def auction_snapshot(*, auction_id: int, viewer: User | None) -> dict[str, Any] | None:
    """The room's snapshot frame. The auction row and the leaderboard are read, then the row's
    seq is read again: if an event committed in between, read again, so the snapshot is exactly
    the state after event `seq` (no lock, so deciders are never held up by watchers)."""
    for _ in range(20):
        auction = selectors.auction_get(auction_id)
        if auction is None:
            return None
        data = selectors.auction_data(auction, viewer=viewer)
        board = selectors.leaderboard(auction=auction)
        if Auction.objects.filter(pk=auction_id).values_list("seq", flat=True).first() == auction.seq:
            break
    return {"type": "snapshot", "auction": data, "leaderboard": board, "seq": auction.seq,
            "server_time": iso(clock.now())}


def restamped(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot with the server's clock as of now (the one thing in it that ages)."""
    now = iso(clock.now())
    return {**snapshot, "auction": {**snapshot["auction"], "server_time": now}, "server_time": now}


def lobby_snapshot() -> dict[str, Any]:
    auctions = selectors.auction_queryset().filter(
        status__in=[Auction.Status.LIVE, Auction.Status.SCHEDULED]
    ).order_by("ends_at")[:500]
    return {"type": "snapshot", "auctions": [selectors.auction_data(a) for a in auctions]}


def events_since(*, auction_id: int, after: int) -> list[dict[str, Any]] | None:
    """Events after `after`, or None when more than MAX_RESUME are missing (send a snapshot)."""
    events = selectors.events_after(auction_id=auction_id, after=after, limit=MAX_RESUME + 1)
    if len(events) > MAX_RESUME:
        return None
    return events


def auction_exists(auction_id: int) -> bool:
    return Auction.objects.filter(pk=auction_id).exists()

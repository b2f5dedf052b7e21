"""The bidders' pages: the lobby (`/`) and an auction's room (`/auctions/<id>/`).

Both are rendered on the server first from the same reads the sockets use
(`realtime.snapshots`), so the HTML already shows titles, prices and leaders; the page scripts then
follow `/ws/lobby/` and `/ws/auctions/<id>/` and continue from the seq the page was rendered at.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from auctions import selectors
from auctions.models import AuctionEvent
from core import clock
from core.pages import coins
from core.timefmt import iso
from realtime import snapshots

SORTS = {"ending": "Ending soon", "bids": "Most bids"}
HISTORY_LINES = 50


def remaining(until: str | None, now: datetime) -> str:
    """A countdown's first frame, before the script takes over: "1h 02m", "4m 05s", "12s"."""
    if until is None:
        return ""
    seconds = max(0, int((datetime.fromisoformat(until.replace("Z", "+00:00")) - now).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _lobby_sort_key(sort: str):
    def ending(a: dict[str, Any]):
        # Live lots by how soon they end, then upcoming ones by how soon they start.
        return (a["status"] != "live", a["ends_at"] if a["status"] == "live" else a["starts_at"], a["id"])

    if sort == "bids":
        return lambda a: (-a["bid_count"], *ending(a))
    return ending


def _card(auction: dict[str, Any], now: datetime) -> dict[str, Any]:
    live = auction["status"] == "live"
    return {
        **auction,
        "price_text": coins(auction["current_price"] if auction["current_price"] is not None
                            else auction["starting_price"]),
        "countdown": remaining(auction["ends_at"] if live else auction["starts_at"], now),
    }


@require_GET
def lobby_page(request: HttpRequest) -> HttpResponse:
    sort = request.GET.get("sort", "ending")
    if sort not in SORTS:
        sort = "ending"
    now = clock.now()
    auctions = sorted(snapshots.lobby_snapshot()["auctions"], key=_lobby_sort_key(sort))
    return render(request, "auctions/lobby.html", {
        "auctions": [_card(a, now) for a in auctions],
        "sorts": SORTS,
        "sort": sort,
        "page_data": {"auctions": auctions, "sort": sort, "server_time": iso(now)},
    })


def _history(auction_id: int, up_to_seq: int) -> list[dict[str, Any]]:
    """The last accepted bids the snapshot reflects, newest first."""
    events = AuctionEvent.objects.filter(auction_id=auction_id, type="bid.accepted", seq__lte=up_to_seq)
    return [selectors.event_data(e) for e in events.order_by("-seq")[:HISTORY_LINES]]


def _my_status(auction: dict[str, Any], board: list[dict[str, Any]], username: str | None) -> str:
    if username is None:
        return "anonymous"
    if username == auction["seller"]:
        return "seller"
    if auction["leader"] == username:
        return "leading"
    if any(entry["username"] == username for entry in board):
        return "outbid"
    return "not_bidding"


@require_GET
def room_page(request: HttpRequest, auction_id: int) -> HttpResponse:
    viewer = request.user if request.user.is_authenticated else None
    snap = snapshots.auction_snapshot(auction_id=auction_id, viewer=viewer)
    if snap is None:
        raise Http404("no such auction")
    auction, board = snap["auction"], snap["leaderboard"]
    history = _history(auction_id, snap["seq"])
    username = viewer.username if viewer else None
    now = clock.now()
    return render(request, "auctions/room.html", {
        "auction": auction,
        "leaderboard": [{**e, "amount_text": coins(e["amount"])} for e in board],
        "history": [{**e, "amount_text": coins(e["data"]["amount"])} for e in history],
        "my_status": _my_status(auction, board, username),
        "text": {
            "price": coins(auction["current_price"]),
            "starting_price": coins(auction["starting_price"]),
            "min_next_bid": coins(auction["min_next_bid"]),
            "buy_now": coins(auction["buy_now_price"]),
            "final_price": coins(auction["final_price"]),
            "my_max": coins(auction["my_max"]),
            "reserve_price": coins(auction.get("reserve_price")),
            "countdown": remaining(auction["ends_at"] if auction["status"] == "live" else auction["starts_at"], now),
        },
        "page_data": {
            "snapshot": snap,
            "history": history,
            "me": {"username": username, "is_staff": bool(viewer and viewer.is_staff)},
        },
    })

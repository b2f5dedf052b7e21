"""REST endpoints for auctions and bids. They validate, delegate to auctions.services or
auctions.selectors, and shape nothing themselves: the selectors' dicts are the contract."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from auctions import intake_batch, selectors, services
from auctions.models import Auction
from core.api_users import MAX_ID, Coins, ErrorOut, Text, optional_auth, staff_auth, user_auth
from core.errors import InvalidInput, NotFound
from core.timefmt import parse_aware

router = Router(tags=["auctions"])

AuctionStatus = Literal["scheduled", "live", "ended", "cancelled"]


# --- schemas (they document the selectors' shapes; responses are validated against them) ----


class AuctionOut(Schema):
    id: int
    title: str
    description: str
    status: AuctionStatus
    seller: str | None
    starts_at: str
    ends_at: str
    starting_price: int
    min_increment: int
    buy_now_price: int | None
    reserve_met: bool | None
    extend_window_s: int
    extend_by_s: int
    current_price: int | None
    leader: str | None
    min_next_bid: int
    bid_count: int
    seq: int
    winner: str | None
    final_price: int | None
    server_time: str
    my_max: int | None
    is_leader: bool
    reserve_price: int | None = Field(None, description="present only for staff")


class AuctionListOut(Schema):
    results: list[AuctionOut]


class AuctionIn(Schema):
    title: Text = Field(..., min_length=1, max_length=200)
    description: Text | None = Field("", max_length=10_000)
    starts_at: Text = Field(..., description="ISO 8601 with an offset", json_schema_extra={"format": "date-time"})
    ends_at: Text = Field(..., description="ISO 8601 with an offset", json_schema_extra={"format": "date-time"})
    starting_price: Coins
    min_increment: Coins = 1
    reserve_price: Coins | None = None
    buy_now_price: Coins | None = None
    extend_window_s: int = Field(30, ge=0, le=86400, strict=True)
    extend_by_s: int = Field(30, ge=0, le=86400, strict=True)
    seller: Text | None = Field(None, description="a username")


class BidIn(Schema):
    amount: int = Field(..., ge=1, le=services.MAX_AMOUNT, description="a JSON integer")
    max_amount: int | None = Field(None, ge=1, le=services.MAX_AMOUNT, description="hidden max, ≥ amount")
    client_bid_id: str | None = Field(None, min_length=1, max_length=64)


class BidOut(Schema):
    bid_id: int
    client_bid_id: str | None
    auction_id: int
    bidder: str
    amount: int
    max_amount: int | None = Field(..., description="shown to its bidder, and to all once the auction is over")
    position: int
    status: Literal["queued", "accepted", "rejected"]
    reason: str | None
    seq: int | None
    created_at: str
    decided_at: str | None


class BidListOut(Schema):
    results: list[BidOut]


class EventOut(Schema):
    seq: int
    type: str
    at: str
    data: dict[str, Any]


class EventListOut(Schema):
    events: list[EventOut]


class LeaderboardEntry(Schema):
    rank: int
    username: str
    amount: int


class LeaderboardOut(Schema):
    entries: list[LeaderboardEntry]


# Open to anyone; a token, if sent, must be valid and personalises the answer.
_ANYONE = {"security": [{}]}  # ninja appends this to the Bearer requirement: either will do


# --- helpers -------------------------------------------------------------------------------


def _auction_or_404(auction_id: int) -> Auction:
    auction = selectors.auction_get(auction_id) if 1 <= auction_id <= MAX_ID else None
    if auction is None:
        raise NotFound("auction not found")
    return auction


def _time(name: str, value: str) -> datetime:
    try:
        parsed = parse_aware(value)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 or 9999 shifted out of range
        raise InvalidInput(str(exc), code="invalid_field", details={"field": name}) from None
    if parsed.year > 9000:  # leaves room for end timers and extensions to be computed
        raise InvalidInput(f"{name} is too far in the future", code="invalid_field", details={"field": name})
    return parsed


def _json_object(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body) if request.body else None
    except (ValueError, RecursionError):
        raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    return data


# --- auctions ------------------------------------------------------------------------------


@router.get(
    "/auctions",
    response={200: AuctionListOut, 400: ErrorOut, 401: ErrorOut},
    auth=optional_auth,
    exclude_unset=True,
    openapi_extra=_ANYONE,
)
def auction_list(request: HttpRequest, status: str | None = None):
    """Auctions, newest first (at most 200), optionally of one `status`."""
    if status is not None and status not in Auction.Status.values:
        raise InvalidInput(
            f"status must be one of {', '.join(Auction.Status.values)}",
            code="invalid_field",
            details={"field": "status"},
        )
    auctions = selectors.auction_list(status=status)
    return {"results": [selectors.auction_data(a, viewer=request.auth) for a in auctions]}


@router.post(
    "/auctions",
    response={201: AuctionOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut},
    auth=staff_auth,
    exclude_unset=True,
)
def auction_create(request: HttpRequest, payload: AuctionIn):
    """Staff: create an auction. Times must carry an offset; one whose start has passed starts
    at once. 400 for nonsense (end not after start or already past, buy-now below the starting
    price or the reserve, unknown seller)."""
    auction = services.auction_create(
        title=payload.title,
        description=payload.description or "",
        starts_at=_time("starts_at", payload.starts_at),
        ends_at=_time("ends_at", payload.ends_at),
        starting_price=payload.starting_price,
        min_increment=payload.min_increment,
        reserve_price=payload.reserve_price,
        buy_now_price=payload.buy_now_price,
        extend_window_s=payload.extend_window_s,
        extend_by_s=payload.extend_by_s,
        seller=payload.seller,
    )
    return Status(201, selectors.auction_data(_auction_or_404(auction.pk), viewer=request.auth))


@router.get(
    "/auctions/{int:auction_id}",
    response={200: AuctionOut, 401: ErrorOut, 404: ErrorOut},
    auth=optional_auth,
    exclude_unset=True,
    openapi_extra=_ANYONE,
)
def auction_detail(request: HttpRequest, auction_id: int):
    """One auction; `my_max` and `is_leader` are the caller's (null and false anonymously)."""
    return selectors.auction_data(_auction_or_404(auction_id), viewer=request.auth)


@router.post(
    "/auctions/{int:auction_id}/cancel",
    response={200: AuctionOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    auth=staff_auth,
    exclude_unset=True,
)
def auction_cancel(request: HttpRequest, auction_id: int):
    """Staff: cancel at once; pending bids are rejected and holds released. 409 `auction_final`
    if the auction has already ended or been cancelled."""
    if not 1 <= auction_id <= MAX_ID:
        raise NotFound("auction not found")
    services.auction_cancel(auction_id=auction_id)
    return selectors.auction_data(_auction_or_404(auction_id), viewer=request.auth)


@router.get(
    "/auctions/{int:auction_id}/events",
    response={200: EventListOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut},
    auth=optional_auth,
    openapi_extra=_ANYONE,
)
def auction_events(
    request: HttpRequest,
    auction_id: int,
    after: int = Query(0, ge=0, le=MAX_ID),
    limit: int = Query(100, ge=1, le=1000),
):
    """The auction's event stream after seq `after`, ascending, at most `limit` (1..1000)."""
    auction = _auction_or_404(auction_id)
    return {"events": selectors.events_after(auction_id=auction.pk, after=after, limit=limit)}


@router.get(
    "/auctions/{int:auction_id}/leaderboard",
    response={200: LeaderboardOut, 401: ErrorOut, 404: ErrorOut},
    auth=optional_auth,
    openapi_extra=_ANYONE,
)
def auction_leaderboard(request: HttpRequest, auction_id: int):
    return {"entries": selectors.leaderboard(auction=_auction_or_404(auction_id))}


# --- bids ----------------------------------------------------------------------------------

_BID_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": BidIn.model_json_schema()}},
    }
}


@router.post(
    "/auctions/{int:auction_id}/bids",
    response={
        202: BidOut,
        200: BidOut,
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
        429: ErrorOut,
    },
    auth=user_auth,
    openapi_extra=_BID_BODY,
)
def bid_create(request: HttpRequest, auction_id: int):
    """Submit a bid. Checks, in this order, storing nothing when one fails: 401
    `not_authenticated`; 404 `not_found`; 400 `invalid_request` (body not a JSON object) or
    `invalid_amount` (amount or max_amount not a JSON integer in 1..10^12, or max < amount) or
    `invalid_field` (client_bid_id); 403 `seller_cannot_bid`; 409 `auction_not_live` or
    `auction_ended`; 429 `rate_limited` with `Retry-After`.

    202 with the queued bid; 200 with the original bid as it stands now when `client_bid_id`
    was seen before for this user and auction (nothing new is stored)."""
    # The body is read here rather than by ninja so that an unknown auction is 404 whatever the
    # body holds, and amounts are checked by the service exactly as for WebSocket bids. Whether
    # the auction exists is asked only of a body that is not a JSON object: for any other,
    # the intake's first check says 404 from the one read it makes for all of them.
    if not 1 <= auction_id <= MAX_ID:
        raise NotFound("auction not found")
    try:
        body = _json_object(request)
    except InvalidInput:
        if not Auction.objects.filter(pk=auction_id).exists():
            raise NotFound("auction not found") from None
        raise
    user = request.auth
    # client_bid_id (NUL, lone surrogates, length) is checked by the service, for WebSocket bids too.
    bid, created = intake_batch.submit_from_view(services.Submission(
        auction_id=auction_id,
        user=user,
        amount=body.get("amount"),
        max_amount=body.get("max_amount"),
        client_bid_id=body.get("client_bid_id"),
        channel="rest",
        rate_limited=True,
    ))
    return Status(202 if created else 200, bid)


@router.get("/bids/{int:bid_id}", response={200: BidOut, 401: ErrorOut, 404: ErrorOut}, auth=user_auth)
def bid_detail(request: HttpRequest, bid_id: int):
    """One of the caller's own bids; anyone else's is 404."""
    bid = selectors.bid_get_for(bid_id=bid_id, user=request.auth) if 1 <= bid_id <= MAX_ID else None
    if bid is None:
        raise NotFound("bid not found")
    return selectors.bid_data(bid, viewer=request.auth)


@router.get("/me/bids", response={200: BidListOut, 400: ErrorOut, 401: ErrorOut}, auth=user_auth)
def my_bids(request: HttpRequest, limit: int = Query(200, ge=1, le=1000)):
    """The caller's bids on every auction, newest first (at most `limit`)."""
    return {"results": selectors.user_bids(user=request.auth, limit=limit)}

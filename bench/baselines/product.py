"""The pieces of the product's bid pipeline a baseline is built from, in one place.

They are private to auctions/services.py (which is being reworked): when its intake or decide
changes shape, this is the only file of bench/baselines/ to adapt. The rules, holds, ledger and
events of a baseline's decision are therefore exactly the product's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from auctions import intake, services
from auctions.models import Auction, Bid
from core import clock, sql
from core.models import User


def bid_check(*, auction_id: int, user: User, amount: Any, max_amount: Any, client_bid_id: Any,
              now: datetime, rate_check: Any = None) -> tuple[Auction, Bid | None]:
    """services.bid_check: the contract's checks, in its order, before anything is stored. Returns
    the auction as checked, and the original bid when `client_bid_id` was seen before (nothing
    new is to be stored then)."""
    return services.bid_check(auction_id=auction_id, user=user, amount=amount, max_amount=max_amount,
                              client_bid_id=client_bid_id, now=now, rate_check=rate_check)


def bid_existing(*, auction_id: int, user: User, client_bid_id: str | None) -> Bid | None:
    """The user's bid on the auction with this client_bid_id, if any."""
    return services._existing(auction_id, user, client_bid_id) if client_bid_id else None


def bid_insert(*, auction_id: int, user: User, amount: int, max_amount: int | None, client_bid_id: str | None,
               channel: str) -> Bid:
    """Store a queued bid with the auction's next position, the product's way (auctions.intake:
    the Intake row lock, held until the caller's transaction commits, if there is one). The
    contract's 409 when the auction stopped taking bids since the check; IntegrityError when the
    bidder's client_bid_id is taken."""
    now = clock.now()
    bid = intake.receive(auction_id=auction_id, bidder_id=user.pk, amount=amount, max_amount=max_amount,
                         client_bid_id=client_bid_id, channel=channel, received_at=now)
    if bid is None:
        services.refuse_closed(auction_id, now)
    bid.bidder = user
    return bid


def bid_decide_locked(auction: Auction, bid: Bid, *, now: datetime) -> None:
    """Decide one queued bid against the auction, whose row lock the caller holds inside its
    transaction: the product's rules, holds, ledger and events; the events, the bidder's
    bid.result and any outbid frames are published after commit."""
    outbox = services.Outbox(auction)
    writes = sql.Writes()
    services._decide_locked(auction, [bid], outbox, writes, now=now)
    outbox.save_events(writes)
    writes.flush()
    outbox.publish_on_commit()

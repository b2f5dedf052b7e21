"""The baselines' bid pipeline: receive a bid and decide it, the sync way or the naive way.

Both speak services.bid_submit's contract (same arguments, same checks and errors, a Submitted
answer) and decide with the product's code (bench.baselines.product), so only the pipeline
differs from Gavel's: no doorbell, no per-auction queue, no batching.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from auctions.models import Auction, Bid
from auctions.services import Submitted
from bench.baselines import product
from bench.baselines.models import Decision
from bench.baselines.tasks import decide_one
from core import clock
from core.models import User


def bid_submit(*, auction_id: int, user: User, amount: Any, max_amount: Any = None,
               client_bid_id: str | None = None, channel: str = "rest", rate_check: Any = None) -> Submitted:
    """Receive a bid. sync: store it and decide it in one transaction, the Intake lock (its
    position) then the auction's row lock held from position to decision, so the answer already
    carries the decision. naive: store it, then (after commit) send one `decide_one` task for it."""
    auction, existing = product.bid_check(auction_id=auction_id, user=user, amount=amount, max_amount=max_amount,
                                          client_bid_id=client_bid_id, now=clock.now(), rate_check=rate_check)
    if existing is not None:
        return Submitted(existing, created=False)
    try:
        with transaction.atomic():
            bid = product.bid_insert(auction_id=auction_id, user=user, amount=amount, max_amount=max_amount,
                                     client_bid_id=client_bid_id, channel=channel)
            if settings.BENCH_DESIGN == "sync":
                auction = _lock(auction_id)
                _decide(auction, bid, now=clock.now())
            else:
                transaction.on_commit(lambda: decide_one.delay(bid.pk))
    except IntegrityError:
        # The same client_bid_id raced in twice: the other one won; answer with it.
        existing = product.bid_existing(auction_id=auction_id, user=user, client_bid_id=client_bid_id)
        if existing is None:
            raise
        return Submitted(existing, created=False)
    bid.auction = auction
    return Submitted(bid, created=True)


def bid_decide(*, bid_id: int) -> bool:
    """naive: decide one bid, whatever else is pending: lock its auction, re-read the bid under
    the lock, decide it if it is still queued. Idempotent; False when there was nothing to do."""
    auction_id = Bid.objects.filter(pk=bid_id).values_list("auction_id", flat=True).first()
    if auction_id is None:
        return False
    with transaction.atomic():
        auction = _lock(auction_id)
        bid = Bid.objects.filter(pk=bid_id, status=Bid.Status.QUEUED).first()
        if bid is None:
            return False
        _decide(auction, bid, now=clock.now())
    return True


def _lock(auction_id: int) -> Auction:
    # The plain FOR UPDATE a team writes. (Gavel's decider takes FOR NO KEY UPDATE, which lets
    # bid INSERTs through: their foreign-key check takes FOR KEY SHARE on the auction row.)
    return Auction.objects.select_for_update().get(pk=auction_id)


def _decide(auction: Auction, bid: Bid, *, now: datetime) -> None:
    """Decide with the product's code and record the decision's order (models.Decision), in the
    caller's transaction, under the auction's row lock."""
    product.bid_decide_locked(auction, bid, now=now)
    Decision.objects.create(auction_id=auction.pk, bid_id=bid.pk, position=bid.position)

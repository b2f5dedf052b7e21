"""Bid tasks: thin. A doorbell decides whatever is pending for its auction (or auctions)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from auctions import services
from tasks import doorbell


@shared_task(name="tasks.bids.decide", bind=True, acks_late=True, max_retries=None)
def decide(self, auction_id: int) -> int:
    doorbell.answered(auction_id)
    try:
        return services.bids_decide_pending(auction_id=auction_id)
    except OperationalError as exc:
        # Lock timeouts and deadlocks roll the whole batch back; deciding again is safe.
        raise self.retry(exc=exc, countdown=0.2) from exc


@shared_task(name="tasks.bids.decide_many", bind=True, acks_late=True, max_retries=None)
def decide_many(self, auction_ids: list[int]) -> int:
    """The doorbells of several auctions this worker owns, rung by one intake batch
    (doorbell.by_owner): each auction decided in turn, in its own transactions, as decide would.
    Each mark is cleared just before its auction is read, not all at first: a bid arriving for
    the group's last auction meanwhile is decided when its turn comes, without a doorbell more."""
    decided = 0
    try:
        for auction_id in auction_ids:
            doorbell.answered(auction_id)
            decided += services.bids_decide_pending(auction_id=auction_id)
        return decided
    except OperationalError as exc:
        # Auctions already decided find nothing pending the second time.
        raise self.retry(exc=exc, countdown=0.2) from exc

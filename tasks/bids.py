"""Bid tasks: thin. The doorbell decides whatever is pending for one auction."""

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

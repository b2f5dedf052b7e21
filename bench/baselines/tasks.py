"""The naive baseline's Celery task: one per bid, on one shared queue (NAIVE_QUEUE), consumed by
a prefork pool with Celery's usual defaults (bench/stack.py starts it): prefetch multiplier 4 and
acks early, i.e. a message is acknowledged as a pool process starts it, before the decision."""

from __future__ import annotations

from django.db import OperationalError

from bench.baselines import NAIVE_QUEUE
from celery_app import app


@app.task(name="bench.baselines.decide_one", bind=True, queue=NAIVE_QUEUE, acks_late=False, ignore_result=True,
          max_retries=None)
def decide_one(self, bid_id: int) -> bool:
    from bench.baselines import bids  # here: bids sends this task, so it imports this module

    try:
        return bids.bid_decide(bid_id=bid_id)
    except OperationalError as exc:
        # A lock timeout or deadlock rolled the decision back; deciding again is safe.
        raise self.retry(exc=exc, countdown=0.2) from exc

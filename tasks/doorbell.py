"""Ringing an auction's queue. The message carries only the auction id: it is a doorbell that
tells the auction's bid worker to decide whatever is pending. Losing one is harmless (the sweep
rings again); a duplicate finds nothing to do."""

from __future__ import annotations

import logging

from tasks.queues import DEFAULT_QUEUE, auction_queue

log = logging.getLogger(__name__)

DECIDE_TASK = "tasks.bids.decide"
END_TASK = "tasks.lifecycle.end"
FIRE_TASK = "tasks.lifecycle.fire"


def _app():
    from celery_app import app

    return app


def ring(auction_id: int) -> None:
    try:
        _app().send_task(DECIDE_TASK, args=[auction_id], queue=auction_queue(auction_id))
    except Exception:
        # The bid is already durable; the sweep will ring again once the broker is back.
        log.warning("could not ring auction %s; the sweep will retry", auction_id, exc_info=True)


def send_end(auction_id: int, end_version: int, *, eta=None) -> None:
    _app().send_task(END_TASK, args=[auction_id, end_version], queue=auction_queue(auction_id), eta=eta)


def send_fire(items: list, *, eta=None) -> None:
    """Timers due within a fraction of a second of each other, in one ETA message."""
    _app().send_task(FIRE_TASK, args=[items], queue=DEFAULT_QUEUE, eta=eta)


def auction_opened(auction_id: int) -> None:
    """A new auction: give its queue a consumer now rather than at the next reconcile."""
    from tasks import assignment

    try:
        worker = assignment.assign(auction_id)
    except Exception:
        log.warning("could not assign auction %s now; the reconciler will", auction_id, exc_info=True)
        return
    if worker:
        tell_worker(worker, auction_id)


def tell_worker(worker: str, auction_id: int) -> None:
    """Fast path: ask the worker to consume the queue now. A broadcast reaches only workers
    listening at that moment, so the worker's own once-a-second sync stays the reliable path."""
    try:
        _app().control.add_consumer(auction_queue(auction_id), destination=[worker], reply=False)
    except Exception:
        log.debug("add_consumer broadcast to %s failed; its sync will pick auction %s up", worker, auction_id)

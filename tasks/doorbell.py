"""Ringing an auction's queue. The message carries only the auction id: it is a doorbell that
tells the auction's bid worker to decide whatever is pending. Losing one is harmless (the sweep
rings again); a duplicate finds nothing to do."""

from __future__ import annotations

import logging

from django.conf import settings

from tasks.queues import DEFAULT_QUEUE, auction_queue

log = logging.getLogger(__name__)

DECIDE_TASK = "tasks.bids.decide"
END_TASK = "tasks.lifecycle.end"
ENDS_TASK = "tasks.lifecycle.end_many"
FIRE_TASK = "tasks.lifecycle.fire"


def _app():
    from celery_app import app

    return app


def _bell_key(auction_id: int) -> str:
    return f"gavel:bell:{auction_id}"


def ring(auction_id: int, *, force: bool = False) -> None:
    """Ask the auction's bid worker to decide what is pending. Unless `force`d, a doorbell
    already on its way is enough: one Redis SET NX instead of a Celery message per bid, and
    the worker then decides those bids in one batch. The worker clears the mark (`answered`)
    before it reads what is pending, so a bid committed after that read always rings anew;
    the mark expires after DOORBELL_TTL_S in case its message was lost (the sweep also rings
    with force)."""
    if force:
        _send_many([auction_id], forced=True)
    else:
        ring_many([auction_id])


def ring_many(auction_ids: list[int]) -> None:
    """ring() for several auctions (an intake batch's): their marks in one Redis round trip, then
    a message for each auction whose doorbell was not already on its way."""
    ttl = max(1, round(settings.DOORBELL_TTL_S))
    try:
        pipe = _redis().pipeline(transaction=False)
        for auction_id in auction_ids:
            pipe.set(_bell_key(auction_id), 1, nx=True, ex=ttl)
        marked = pipe.execute()
    except Exception:
        log.debug("doorbell marks unavailable; ringing %s anyway", auction_ids, exc_info=True)
        marked = [True] * len(auction_ids)
    _send_many([auction_id for auction_id, fresh in zip(auction_ids, marked, strict=True) if fresh])


def _send_many(auction_ids: list[int], *, forced: bool = False) -> None:
    """A doorbell message for each auction, all in one Redis round trip (`_publish`)."""
    if not auction_ids:
        return
    about = {"auction_id": auction_ids[0]} if len(auction_ids) == 1 else {"auction_ids": auction_ids}
    try:
        _publish(DECIDE_TASK, [([auction_id], auction_queue(auction_id)) for auction_id in auction_ids])
    except Exception:
        # The bids are already durable; the sweep will ring again once the broker is back. Some
        # of these may have gone out: a doorbell twice finds nothing to do the second time.
        log.warning("could not ring auctions %s; the sweep will retry", auction_ids, exc_info=True, extra=about)
        for auction_id in auction_ids:
            _clear(auction_id)
    else:
        log.debug("rang auctions %s%s", auction_ids, " (forced)" if forced else "",
                  extra={**about, "forced": forced})


def _publish(task: str, messages: list[tuple[list, str]], **options) -> None:
    """Send `task` once per (args, queue), all in one Redis round trip (kombu's producer batch).
    Celery's send_task alone costs ~0.5 ms of CPU, most of it kombu making a Redis client and a
    round trip per message; an intake batch of the many-auctions benchmark rings tens of
    auctions, and a timer firing for 40 auctions ending in one second sent their ends 5.7 ms
    apart. Raises if the broker took none or only some of them."""
    app = _app()
    with app.producer_or_acquire() as producer, producer.batch():
        for args, queue in messages:
            app.send_task(task, args=args, queue=queue, producer=producer, declare=_no_declare(), **options)


def _no_declare() -> list:
    """What a message to an auction queue declares: nothing. Celery publishes it through the
    anonymous exchange (the routing key is the Redis list's name), so the queue needs no
    binding, yet by default it declares the queue on the first message to it on each pooled
    connection: a binding SADD outside the producer batch, one Redis round trip more. Ends and
    doorbells go to a new auction's queue nearly every time (an eighth of the default worker's
    CPU over a timers run). The consumer declares its queues when it starts consuming them. A
    new list each time: kombu's producer may append its exchange to it."""
    return []


def answered(auction_id: int) -> None:
    """Called by the bid worker before it reads the auction's pending bids."""
    _clear(auction_id)


def _clear(auction_id: int) -> None:
    try:
        _redis().delete(_bell_key(auction_id))
    except Exception:  # the mark expires by itself
        log.debug("could not clear the doorbell mark of auction %s", auction_id, exc_info=True,
                  extra={"auction_id": auction_id})


def _redis():
    from tasks.redis_client import client

    return client()


def send_end(auction_id: int, end_version: int, *, eta=None) -> None:
    _app().send_task(END_TASK, args=[auction_id, end_version], queue=auction_queue(auction_id), eta=eta,
                     declare=_no_declare())


def send_ends(groups: list[list[tuple[int, int]]]) -> None:
    """One message per group of (auction id, end version), on the queue of the group's first
    auction, all in one round trip: the consumer of that queue ends the group's auctions one
    after another in one task (tasks.lifecycle.end_many)."""
    _publish(ENDS_TASK, [([[list(end) for end in group]], auction_queue(group[0][0])) for group in groups if group])


def send_fire(items: list, *, eta=None) -> None:
    """Timers due within a fraction of a second of each other, in one ETA message."""
    _app().send_task(FIRE_TASK, args=[items], queue=DEFAULT_QUEUE, eta=eta)


def auction_opened(auction_id: int) -> None:
    """A new auction: give its queue a consumer now rather than at the next reconcile."""
    from tasks import assignment

    try:
        worker = assignment.assign(auction_id)
    except Exception:
        log.warning("could not assign auction %s now; the reconciler will", auction_id, exc_info=True,
                    extra={"auction_id": auction_id})
        return
    if worker:
        tell_worker(worker, auction_id)


def tell_worker(worker: str, auction_id: int) -> None:
    """Fast path: ask the worker to consume the queue now. A broadcast reaches only workers
    listening at that moment, so the worker's own once-a-second sync stays the reliable path."""
    try:
        _app().control.add_consumer(auction_queue(auction_id), destination=[worker], reply=False)
    except Exception:
        log.debug("add_consumer broadcast to %s failed; its sync will pick auction %s up", worker, auction_id,
                  extra={"auction_id": auction_id, "worker": worker})

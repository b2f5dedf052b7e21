"""Ringing an auction's queue. The message carries only the auction id: it is a doorbell that
tells the auction's bid worker to decide whatever is pending. Losing one is harmless (the sweep
rings again); a duplicate finds nothing to do."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from typing import TypeVar

from django.conf import settings

from tasks.queues import DEFAULT_QUEUE, auction_queue

log = logging.getLogger(__name__)

DECIDE_TASK = "tasks.bids.decide"
DECIDE_MANY_TASK = "tasks.bids.decide_many"
END_TASK = "tasks.lifecycle.end"
ENDS_TASK = "tasks.lifecycle.end_many"
FIRE_TASK = "tasks.lifecycle.fire"

# Which bid worker consumes each auction's queue (tasks.assignment keeps it; read here too, in
# the doorbells' own pipeline).
ASSIGN_KEY = "gavel:assign"

# At most this many auctions per decide_many doorbell, so that one task stays short and the
# worker's other doorbells are not held behind it. In the many-auctions benchmark, whole groups
# gave p99 submit -> result 2.5 s, groups of 8 1.9-2.0 s, of 4 1.6-2.0 s with less throughput.
GROUP_MOST = 8

T = TypeVar("T")


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
        _send_many([[auction_id]], forced=True)
    else:
        ring_many([auction_id])


def ring_many(auction_ids: list[int]) -> None:
    """ring() for several auctions (an intake batch's): their marks and their owners in one
    Redis round trip, then one message per bid worker for the auctions whose doorbell was not
    already on its way (`by_owner`)."""
    ttl = max(1, round(settings.DOORBELL_TTL_S))
    grouping = len(auction_ids) > 1  # a lone auction is one decide whoever owns it
    owners: list[str | None] = [None] * len(auction_ids)
    try:
        pipe = _redis().pipeline(transaction=False)
        for auction_id in auction_ids:
            pipe.set(_bell_key(auction_id), 1, nx=True, ex=ttl)
        if grouping:
            pipe.hmget(ASSIGN_KEY, [str(auction_id) for auction_id in auction_ids])
        replies = pipe.execute()
        marked = replies[:len(auction_ids)]
        if grouping:
            owners = replies[-1]
    except Exception:
        log.debug("doorbell marks unavailable; ringing %s anyway", auction_ids, exc_info=True)
        marked = [True] * len(auction_ids)
    fresh = [(auction_id, owner) for auction_id, owner, new in zip(auction_ids, owners, marked, strict=True) if new]
    # A group is decided in its order, so its last auction waits for the others: shuffled, no
    # auction is always last (in id order, the highest ids of the many-auctions benchmark were
    # decided at 8.4 bids/s against 13.8 for the lowest, and set its p99).
    random.shuffle(fresh)
    _send_many(by_owner(fresh, most=GROUP_MOST))


def by_owner(items: Iterable[tuple[T, str | None]], *, most: int | None = None) -> list[list[T]]:
    """The items grouped by the bid worker that owns their auctions, in the order given, at most
    `most` to a group when given; an item whose owner is not known goes alone. Each group is then
    one Celery message, which that worker handles in one task: a message per auction cost the
    worker about a third of a decision or an end again (ack, poll, task bookkeeping, connection
    health check, a first read). A group that reaches another worker after a move is still
    handled correctly: deciding and ending lock the auction in the database, whichever worker
    does it."""
    groups: dict[object, list[T]] = {}
    for n, (item, owner) in enumerate(items):
        groups.setdefault(owner if owner is not None else ("alone", n), []).append(item)
    if most is None:
        return list(groups.values())
    return [group[i:i + most] for group in groups.values() for i in range(0, len(group), most)]


def _send_many(groups: list[list[int]], *, forced: bool = False) -> None:
    """A doorbell message per group of auctions, on the queue of its first auction, all in one
    Redis round trip (`_publish`): `tasks.bids.decide` for an auction alone, else
    `tasks.bids.decide_many`."""
    groups = [group for group in groups if group]
    if not groups:
        return
    auction_ids = [auction_id for group in groups for auction_id in group]
    about = {"auction_id": auction_ids[0]} if len(auction_ids) == 1 else {"auction_ids": auction_ids}
    try:
        _publish([(DECIDE_TASK, group, auction_queue(group[0])) if len(group) == 1
                  else (DECIDE_MANY_TASK, [group], auction_queue(group[0])) for group in groups])
    except Exception:
        # The bids are already durable; the sweep will ring again once the broker is back. Some
        # of these may have gone out: a doorbell twice finds nothing to do the second time.
        log.warning("could not ring auctions %s; the sweep will retry", auction_ids, exc_info=True, extra=about)
        _clear(*auction_ids)
    else:
        log.debug("rang auctions %s%s", auction_ids, " (forced)" if forced else "",
                  extra={**about, "forced": forced})


def _publish(messages: list[tuple[str, list, str]], **options) -> None:
    """Send each (task, args, queue), all in one Redis round trip (kombu's producer batch).
    Celery's send_task alone costs ~0.5 ms of CPU, most of it kombu making a Redis client and a
    round trip per message; an intake batch of the many-auctions benchmark rings tens of
    auctions, and a timer firing for 40 auctions ending in one second sent their ends 5.7 ms
    apart. Raises if the broker took none or only some of them."""
    app = _app()
    with app.producer_or_acquire() as producer, producer.batch():
        for task, args, queue in messages:
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


def answered(*auction_ids: int) -> None:
    """Called by the bid worker before it reads the auctions' pending bids."""
    _clear(*auction_ids)


def _clear(*auction_ids: int) -> None:
    try:
        _redis().delete(*(_bell_key(auction_id) for auction_id in auction_ids))
    except Exception:  # the marks expire by themselves
        log.debug("could not clear the doorbell marks of auctions %s", auction_ids, exc_info=True,
                  extra={"auction_ids": list(auction_ids)})


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
    _publish([(ENDS_TASK, [[list(end) for end in group]], auction_queue(group[0][0])) for group in groups if group])


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

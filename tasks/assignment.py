"""Which bid worker consumes which auction's queue (P7).

The assignment lives in Redis: `gavel:assign` (auction id -> worker name) and one set per worker
(`gavel:worker:<name>`) that the worker polls every second to add or cancel queue consumers.
Workers heartbeat into `gavel:bidworkers` (a sorted set scored by time). `reconcile` (beat, every
second) gives unassigned auctions and those of silent workers to the least loaded live worker.
Correctness does not depend on this being exact: bids are ordered and decided once by the
database (Intake positions, the Auction row lock), so two consumers for a moment is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from django.conf import settings

from tasks import doorbell
from tasks.redis_client import client

WORKERS_KEY = "gavel:bidworkers"
ASSIGN_KEY = "gavel:assign"


TICK_KEY = "gavel:last_tick"


def record_tick(*, now: float | None = None) -> None:
    """The lifecycle tick ran: /api/health reads this to tell whether beat is alive."""
    client().set(TICK_KEY, now if now is not None else time.time(), ex=3600)


def last_tick() -> float | None:
    value = client().get(TICK_KEY)
    return float(value) if value else None


def _worker_key(name: str) -> str:
    return f"gavel:worker:{name}"


def heartbeat(name: str, *, now: float | None = None) -> None:
    client().zadd(WORKERS_KEY, {name: now if now is not None else time.time()})


def retire(name: str) -> None:
    """A worker stopping cleanly: drop it at once so its auctions move without waiting."""
    client().zrem(WORKERS_KEY, name)


def live_workers(*, now: float | None = None) -> list[str]:
    now = now if now is not None else time.time()
    return list(client().zrangebyscore(WORKERS_KEY, now - settings.BID_WORKER_TIMEOUT_S, "+inf"))


def assigned_auctions(name: str) -> set[int]:
    return {int(a) for a in client().smembers(_worker_key(name))}


def owner(auction_id: int) -> str | None:
    return client().hget(ASSIGN_KEY, str(auction_id))


def _load(workers: Iterable[str]) -> dict[str, int]:
    pipe = client().pipeline()
    names = list(workers)
    for name in names:
        pipe.scard(_worker_key(name))
    return dict(zip(names, pipe.execute(), strict=True))


def _move(auction_id: int, to: str | None, previous: str | None) -> None:
    pipe = client().pipeline()
    if previous:
        pipe.srem(_worker_key(previous), auction_id)
    if to:
        pipe.hset(ASSIGN_KEY, str(auction_id), to)
        pipe.sadd(_worker_key(to), auction_id)
    else:
        pipe.hdel(ASSIGN_KEY, str(auction_id))
    pipe.execute()


def assign(auction_id: int) -> str | None:
    """Give the auction to the least loaded live worker unless a live one has it already."""
    workers = live_workers()
    current = owner(auction_id)
    if current in workers:
        return current
    if not workers:
        return None
    load = _load(workers)
    chosen = min(workers, key=lambda w: (load[w], w))
    _move(auction_id, chosen, current)
    return chosen


def reconcile(active_auction_ids: Iterable[int]) -> dict[str, int]:
    """Make the assignment match the active auctions and the live workers. Returns counts."""
    active = {int(a) for a in active_auction_ids}
    workers = live_workers()
    assigned = {int(k): v for k, v in client().hgetall(ASSIGN_KEY).items()}
    load = _load(workers)
    moved = dropped = 0
    for auction_id, worker in assigned.items():
        if auction_id not in active:
            _move(auction_id, None, worker)
            dropped += 1
    for auction_id in sorted(active):
        worker = assigned.get(auction_id)
        if worker in load:
            continue
        if not workers:
            break
        chosen = min(workers, key=lambda w: (load[w], w))
        _move(auction_id, chosen, worker)
        load[chosen] += 1
        moved += 1
        doorbell.tell_worker(chosen, auction_id)
    # Sets of workers that are gone keep nothing: a worker that comes back starts clean.
    for key in client().scan_iter(match=_worker_key("*"), count=500):
        name = key[len(_worker_key("")):]
        if name not in load:
            client().delete(key)
    return {"workers": len(workers), "moved": moved, "dropped": dropped}

"""Which bid worker consumes which auction's queue (P7).

The assignment lives in Redis: `gavel:assign` (auction id -> worker name) and one set per worker
(`gavel:worker:<name>`) that the worker polls every second to add or cancel queue consumers.
Workers heartbeat into `gavel:bidworkers` (a sorted set scored by time). `reconcile` (beat, every
second) follows a plan made by `plan_moves`: auctions that are no longer active are dropped,
unassigned auctions and those of silent workers go to the least loaded live worker, and when the
live workers' loads differ by two or more (a worker joined, or auctions ended unevenly) auctions
move from the most to the least loaded until they do not. An operator may move an auction by
hand (`move`, from the admin); it is then pinned there: rebalancing leaves it alone while that
worker lives (`gavel:pinned`). The hash is the truth: each pass ends by making every worker's
set equal to its part of it (`repair_sets`).
Correctness does not depend on this being exact: bids are ordered and decided once by the
database (Intake positions, the Auction row lock), so two consumers for a moment is harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from tasks import doorbell
from tasks.redis_client import client

log = logging.getLogger(__name__)

WORKERS_KEY = "gavel:bidworkers"
ASSIGN_KEY = doorbell.ASSIGN_KEY
PINNED_KEY = "gavel:pinned"
# A rebalancing pass moves at most this many auctions: a worker joining a cluster with thousands
# of auctions gets its share over a few seconds, not as one burst of queue subscriptions. Moves
# of orphaned auctions (a dead worker's) are never held back.
REBALANCE_MOVES_PER_PASS = 50
# Heartbeats of workers gone this long are forgotten: the admin lists them until then.
FORGET_WORKER_AFTER_S = 3600.0


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


def heartbeats() -> dict[str, float]:
    """Every worker still remembered (live or not) and the time of its last heartbeat."""
    return {name: score for name, score in client().zrange(WORKERS_KEY, 0, -1, withscores=True)}


def is_live(last_heartbeat: float | None, *, now: float) -> bool:
    return last_heartbeat is not None and last_heartbeat >= now - settings.BID_WORKER_TIMEOUT_S


def assigned_auctions(name: str) -> set[int]:
    return {int(a) for a in client().smembers(_worker_key(name))}


def owner(auction_id: int) -> str | None:
    return client().hget(ASSIGN_KEY, str(auction_id))


def owners(auction_ids: Iterable[int]) -> dict[int, str | None]:
    """owner() of each auction, in one round trip."""
    auction_ids = list(auction_ids)
    if not auction_ids:
        return {}
    return dict(zip(auction_ids, client().hmget(ASSIGN_KEY, [str(a) for a in auction_ids]), strict=True))


def assignments() -> dict[int, str]:
    return {int(k): v for k, v in client().hgetall(ASSIGN_KEY).items()}


def pinned() -> dict[int, str]:
    return {int(k): v for k, v in client().hgetall(PINNED_KEY).items()}


def _load(workers: Iterable[str]) -> dict[str, int]:
    pipe = client().pipeline()
    names = list(workers)
    for name in names:
        pipe.scard(_worker_key(name))
    return dict(zip(names, pipe.execute(), strict=True))


ANYONE = object()  # `_move`'s expected owner when any will do


def _move(auction_id: int, to: str | None, previous: str | None | object, *, pin: bool = False) -> bool:
    """Reassign, if the auction's owner is still `previous` (ANYONE: whoever it is), in one
    MULTI: the hash and both workers' sets change together, the set changed being the owner's
    as of the transaction, so that a move racing another never leaves an auction in a set it
    does not own (a consumer nobody would ever cancel). Returns whether it moved. Any move but
    an operator's (`pin`) drops the auction's pin: it is no longer where the operator put it."""
    key = str(auction_id)

    def apply(pipe) -> bool:
        current = pipe.hget(ASSIGN_KEY, key)
        if previous is not ANYONE and current != previous:
            return False  # moved meanwhile; whoever planned this move plans again
        pipe.multi()
        if current and current != to:
            pipe.srem(_worker_key(current), auction_id)
        if to:
            pipe.hset(ASSIGN_KEY, key, to)
            pipe.sadd(_worker_key(to), auction_id)
        else:
            pipe.hdel(ASSIGN_KEY, key)
        if pin and to:
            pipe.hset(PINNED_KEY, key, to)
        else:
            pipe.hdel(PINNED_KEY, key)
        return True

    return client().transaction(apply, ASSIGN_KEY, value_from_callable=True)


def move(auction_id: int, to: str) -> str | None:
    """An operator's move: `to` consumes the auction's queue from its next sync (and at once if
    the broadcast reaches it), the previous owner stops at its own next sync. Pinned: rebalancing
    leaves it there while `to` lives. Returns the previous owner. The caller checks that `to` is
    live and the auction active (tasks.operations)."""
    previous = owner(auction_id)
    _move(auction_id, to, ANYONE, pin=True)
    doorbell.tell_worker(to, auction_id)
    return previous


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
    return chosen if _move(auction_id, chosen, current) else owner(auction_id)


@dataclass(frozen=True)
class Move:
    auction_id: int
    to: str | None  # None: the auction is no longer active, nobody consumes it
    previous: str | None
    reason: str  # "inactive", "orphaned" (no owner, or its owner is silent) or "rebalance"


def plan_moves(*, active: set[int], live: list[str], assigned: dict[int, str], pins: dict[int, str],
               limit: int = REBALANCE_MOVES_PER_PASS) -> list[Move]:
    """What reconcile changes, as a pure function of what it read. Deterministic (ties go to
    the lower worker name and auction id), so two reconcilers racing make the same moves.

    Loads count every auction a live worker owns. Rebalancing stops once the loads differ by at
    most one, and never moves a pinned auction: a worker that joins gets auctions, one that holds
    a fair share keeps them, so auctions do not shuttle between workers."""
    moves: list[Move] = []
    owned: dict[str, set[int]] = {w: set() for w in live}
    for auction_id, worker in sorted(assigned.items()):
        if auction_id not in active:
            moves.append(Move(auction_id, None, worker, "inactive"))
        elif worker in owned:
            owned[worker].add(auction_id)
    if not live:
        return moves

    def lightest() -> str:
        return min(live, key=lambda w: (len(owned[w]), w))

    for auction_id in sorted(active):
        worker = assigned.get(auction_id)
        if worker not in owned:
            chosen = lightest()
            owned[chosen].add(auction_id)
            moves.append(Move(auction_id, chosen, worker, "orphaned"))

    for _ in range(limit):
        light = lightest()
        movable = {w: sorted(a for a in owned[w] if pins.get(a) != w) for w in live}
        heavy = [w for w in live if len(owned[w]) - len(owned[light]) >= 2 and movable[w]]
        if not heavy:
            break
        source = min(heavy, key=lambda w: (-len(owned[w]), w))
        # The newest auction of the busiest worker: it has had the least time to get busy.
        auction_id = movable[source][-1]
        owned[source].discard(auction_id)
        owned[light].add(auction_id)
        moves.append(Move(auction_id, light, source, "rebalance"))
    return moves


def reconcile(active_auction_ids: Iterable[int]) -> dict[str, int]:
    """Make the assignment match the active auctions and the live workers (plan_moves). Returns
    counts: live workers, auctions dropped, orphans given a worker, auctions rebalanced."""
    active = {int(a) for a in active_auction_ids}
    now = time.time()
    workers = live_workers(now=now)
    moves = plan_moves(active=active, live=workers, assigned=assignments(), pins=pinned())
    counts = {"workers": len(workers), "inactive": 0, "orphaned": 0, "rebalance": 0}
    for m in moves:
        if not _move(m.auction_id, m.to, m.previous):
            continue
        counts[m.reason] += 1
        if m.to is not None:
            doorbell.tell_worker(m.to, m.auction_id)
    if any(m.reason == "rebalance" for m in moves):
        log.info("rebalanced %d auctions over %d bid workers", counts["rebalance"], len(workers))
    repaired = repair_sets()
    if repaired:
        log.warning("bid worker sets disagreed with the assignment in %d places; repaired", repaired,
                    extra={"repaired": repaired})
    client().zremrangebyscore(WORKERS_KEY, "-inf", now - FORGET_WORKER_AFTER_S)
    return counts


def repair_sets() -> int:
    """Make each worker's set hold exactly the auctions the hash gives it, in one transaction
    that a concurrent move (every move writes the hash) makes start again. Returns how many
    members were added or removed.

    The worker follows its set, and loads are counted from the sets, while ownership is the
    hash: an auction in the hash but missing from its owner's set has no consumer, and no plan
    would ever move it (its owner is live). Reconciles used to delete the sets of workers they
    had not seen alive; two overlapping (as they do when beat's ticks queued during a Redis
    outage arrive together) deleted the set of a worker that had just heartbeated and been
    given auctions by the other, and an auction's bids waited for ever. A gone worker's set is
    emptied here too, member by member, once the plan has moved its auctions away."""
    prefix = _worker_key("")

    def apply(pipe) -> int:
        wanted: dict[str, set[str]] = {}
        for auction_id, worker in pipe.hgetall(ASSIGN_KEY).items():
            wanted.setdefault(worker, set()).add(auction_id)
        names = set(wanted) | {key[len(prefix):] for key in pipe.scan_iter(match=_worker_key("*"), count=500)}
        fixes = []
        for name in sorted(names):
            held = pipe.smembers(_worker_key(name))
            want = wanted.get(name, set())
            if held != want:
                fixes.append((name, want - held, held - want))
        pipe.multi()
        for name, missing, extra in fixes:
            if missing:
                pipe.sadd(_worker_key(name), *missing)
            if extra:
                pipe.srem(_worker_key(name), *extra)
        return sum(len(missing) + len(extra) for _, missing, extra in fixes)

    return client().transaction(apply, ASSIGN_KEY, value_from_callable=True)

"""What an operator does to bid workers from the admin (tasks/admin_views.py): see them, move an
auction to another one, ring a stuck auction's doorbell.

Plain functions over the assignment (tasks.assignment, in Redis) and the auctions' rows; the
admin view only renders what they return and turns OperationError into a message. Each one is
safe to call at any time: correctness never depends on which worker consumes an auction (the
database orders and decides each bid once), so the worst a mistaken move does is cost a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Count

from auctions.models import Auction, Bid
from tasks import assignment, doorbell

ACTIVE = (Auction.Status.SCHEDULED, Auction.Status.LIVE)


class OperationError(Exception):
    """The operation was refused; the message says why, for the operator."""


@dataclass(frozen=True)
class AuctionLoad:
    auction_id: int
    title: str
    status: str
    pending: int  # bids received and not yet decided
    pinned: bool  # moved here by an operator: rebalancing leaves it alone


@dataclass(frozen=True)
class WorkerState:
    name: str
    live: bool
    last_heartbeat: datetime | None
    silent_for: float | None  # seconds since that heartbeat
    auctions: list[AuctionLoad]

    @property
    def pending(self) -> int:
        return sum(a.pending for a in self.auctions)


@dataclass(frozen=True)
class Overview:
    workers: list[WorkerState]  # live ones first, then by name
    unassigned: list[AuctionLoad]  # active auctions no live worker consumes yet

    @property
    def live_names(self) -> list[str]:
        return [w.name for w in self.workers if w.live]


def bid_workers_overview(*, now: float | None = None) -> Overview:
    """Every bid worker Redis remembers (live or not), the auctions it owns with their pending
    bids, and the active auctions that have no live owner. Auctions whose rows are gone or final
    are left out: the next reconcile drops them from the assignment."""
    now = now if now is not None else time.time()
    beats = assignment.heartbeats()
    owners = assignment.assignments()
    pins = assignment.pinned()
    rows = {pk: (title, status) for pk, title, status in
            Auction.objects.filter(status__in=ACTIVE).values_list("pk", "title", "status")}
    pending = dict(Bid.objects.filter(status=Bid.Status.QUEUED, auction_id__in=list(rows))
                   .values("auction_id").annotate(n=Count("id")).values_list("auction_id", "n"))

    def load(auction_id: int) -> AuctionLoad:
        title, status = rows[auction_id]
        return AuctionLoad(auction_id, title, status, pending.get(auction_id, 0),
                           pins.get(auction_id) == owners.get(auction_id))

    names = set(beats) | set(owners.values())
    workers = [
        WorkerState(
            name=name,
            live=assignment.is_live(beats.get(name), now=now),
            last_heartbeat=datetime.fromtimestamp(beats[name], UTC) if name in beats else None,
            silent_for=max(0.0, now - beats[name]) if name in beats else None,
            auctions=[load(a) for a in sorted(owners) if owners[a] == name and a in rows],
        )
        for name in names
    ]
    workers.sort(key=lambda w: (not w.live, w.name))
    live = {w.name for w in workers if w.live}
    unassigned = [load(a) for a in sorted(rows) if owners.get(a) not in live]
    return Overview(workers, unassigned)


def _active_auction(auction_id: int) -> Auction:
    auction = Auction.objects.filter(pk=auction_id).first()
    if auction is None:
        raise OperationError(f"Auction #{auction_id} does not exist.")
    if auction.status not in ACTIVE:
        raise OperationError(f"{auction} is {auction.status}: only scheduled and live auctions have a bid worker.")
    return auction


@dataclass(frozen=True)
class Moved:
    auction: Auction
    previous: str | None  # who owned it before (None: nobody)
    worker: str


def auction_move(*, auction_id: int, worker: str) -> Moved:
    """Give the auction's queue to `worker`, which must be live, and pin it there (rebalancing
    will not move it back while that worker lives; if it dies the auction fails over as any
    other). For a moment both workers may consume the queue, which is safe."""
    auction = _active_auction(auction_id)
    if not assignment.is_live(assignment.heartbeats().get(worker), now=time.time()):
        raise OperationError(f"Bid worker {worker} is not live; pick one that is.")
    previous = assignment.move(auction.pk, worker)
    return Moved(auction, previous, worker)


@dataclass(frozen=True)
class Rung:
    auction: Auction
    pending: int  # bids waiting for a decision when the doorbell was rung
    consumer: str | None  # the live worker that will answer it; None: none consumes the queue yet


def auction_ring(*, auction_id: int) -> Rung:
    """Force a doorbell onto the auction's queue (ring(force=True): past the mark that
    suppresses repeated rings), so its worker decides whatever is pending now rather than at the
    next sweep. Harmless when nothing is pending: the doorbell finds nothing to do."""
    auction = _active_auction(auction_id)
    pending = Bid.objects.filter(auction_id=auction.pk, status=Bid.Status.QUEUED).count()
    doorbell.ring(auction.pk, force=True)
    owner = assignment.owner(auction.pk)
    return Rung(auction, pending, owner if owner in assignment.live_workers() else None)

"""The bid worker's part of P7: a consumer bootstep, active with `celery worker --bids`.

Every second it heartbeats and makes the set of auction queues it consumes equal to its
assignment (tasks.assignment). It applies the assignment at start too, so a restarted worker
picks its auctions up again without anyone having to broadcast to it.
"""

from __future__ import annotations

import logging

import click
from celery import bootsteps
from celery.signals import worker_shutting_down

from tasks.queues import auction_id_of, auction_queue

log = logging.getLogger("gavel.bidworker")

SYNC_INTERVAL_S = 1.0


class BidQueues(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, bids: bool = False, **kwargs):
        super().__init__(parent, **kwargs)
        self.enabled = bool(bids)
        self.tref = None
        self.worker_name: str | None = None

    def start(self, c) -> None:
        self.worker_name = c.hostname
        _state["name"] = self.worker_name
        self.sync(c)
        self.tref = c.timer.call_repeatedly(SYNC_INTERVAL_S, self.sync, (c,), priority=10)
        log.info("bid worker %s consuming %d auction queues", self.worker_name, len(self._current(c)),
                 extra={"worker": self.worker_name})

    def stop(self, c) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    @staticmethod
    def _current(c) -> set[int]:
        ids = set()
        for queue in c.task_consumer.queues:
            auction_id = auction_id_of(queue.name)
            if auction_id is not None:
                ids.add(auction_id)
        return ids

    def sync(self, c) -> None:
        from tasks import assignment

        try:
            assignment.heartbeat(self.worker_name)
            wanted = assignment.assigned_auctions(self.worker_name)
        except Exception:
            log.warning("assignment sync failed; keeping current queues", exc_info=True,
                        extra={"worker": self.worker_name})
            return
        current = self._current(c)
        for auction_id in sorted(wanted - current):
            c.add_task_queue(auction_queue(auction_id))
        for auction_id in sorted(current - wanted):
            c.cancel_task_queue(auction_queue(auction_id))
        if wanted != current:
            # Which auctions, not just how many, in the line itself too (the plain format shows
            # no list fields): an operator following a rebalance or a failover reads here who
            # took what (docs/operations.md).
            log.info("bid worker %s: now consuming %d auction queues; added %s; stopped %s", self.worker_name,
                     len(wanted), _ids(wanted - current), _ids(current - wanted),
                     extra={"worker": self.worker_name, "added": sorted(wanted - current)[:50],
                            "dropped": sorted(current - wanted)[:50]})


def _ids(auction_ids: set[int], shown: int = 20) -> str:
    ordered = sorted(auction_ids)
    text = ",".join(map(str, ordered[:shown])) or "none"
    return text + (f" (+{len(ordered) - shown} more)" if len(ordered) > shown else "")


_state: dict[str, str | None] = {"name": None}


@worker_shutting_down.connect
def _retire_on_shutdown(**_kwargs) -> None:
    # Drop the heartbeat as soon as a warm shutdown begins, so the auctions move right away.
    from tasks import assignment

    if _state["name"]:
        try:
            assignment.retire(_state["name"])
        except Exception:
            log.warning("could not retire %s", _state["name"], exc_info=True, extra={"worker": _state["name"]})


def install(app) -> None:
    app.user_options["worker"].add(
        click.Option(["--bids"], is_flag=True, default=False,
                     help="Act as a Gavel bid worker: consume the auction queues assigned to this worker.")
    )
    app.steps["consumer"].add(BidQueues)

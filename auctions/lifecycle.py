"""Timers of record (P6). The database holds starts_at, ends_at and end_version; beat ticks every
second. A tick starts what is due, arms ETA tasks for what falls due within TIMER_ARM_AHEAD_S (so
it fires on time rather than on the next tick), and ends directly what is overdue because its
timer was lost (a dead worker, a broker blip). Beat itself holds no state: after a restart the
next tick catches up, and firing twice does nothing the second time.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings

from auctions import services
from auctions.models import Auction, Bid
from core import clock, counters
from tasks import assignment, doorbell

log = logging.getLogger(__name__)

# An end this late has lost its timer: end it from the tick itself.
OVERDUE = timedelta(seconds=3)
# An ETA task may run a hair early (clock granularity); wait out up to this much.
EARLY_SLACK_S = 1.0
FIRE_BUCKET_S = 0.25


def timers_tick(*, now: datetime | None = None) -> dict[str, int]:
    now = now or clock.now()
    assignment.record_tick()
    horizon = now + timedelta(seconds=settings.TIMER_ARM_AHEAD_S)
    counts = {"started": 0, "armed_starts": 0, "armed_ends": 0, "ended": 0}
    armed: list[tuple[str, int, int, datetime]] = []

    due = Auction.objects.filter(status=Auction.Status.SCHEDULED, starts_at__lte=now).values_list("pk", flat=True)
    for auction_id in list(due):
        counts["started"] += services.auction_start(auction_id=auction_id, now=now)

    soon = Auction.objects.filter(
        status=Auction.Status.SCHEDULED, starts_at__gt=now, starts_at__lte=horizon, armed_start=False
    ).values_list("pk", "starts_at")
    for auction_id, starts_at in list(soon):
        if Auction.objects.filter(pk=auction_id, armed_start=False).update(armed_start=True):
            armed.append(("start", auction_id, 0, starts_at))
            counts["armed_starts"] += 1

    ending = Auction.objects.filter(status=Auction.Status.LIVE, ends_at__lte=horizon).values_list(
        "pk", "ends_at", "end_version", "armed_end_version"
    )
    for auction_id, ends_at, version, armed_version in list(ending):
        if ends_at <= now - OVERDUE:
            log.warning("auction %s end is %.1fs overdue; ending it from the tick",
                        auction_id, (now - ends_at).total_seconds(), extra={"auction_id": auction_id})
            counts["ended"] += services.auction_end(auction_id=auction_id)
            continue
        if armed_version >= version:
            continue
        if Auction.objects.filter(pk=auction_id, armed_end_version__lt=version).update(armed_end_version=version):
            counts["armed_ends"] += 1
            if ends_at <= now:
                doorbell.send_end(auction_id, version)
            else:
                armed.append(("end", auction_id, version, ends_at))

    # One ETA task per time bucket rather than one per auction: a Celery worker fires at most
    # ten due timers per event-loop turn and then sleeps up to a second (kombu's Hub), which
    # made the eleventh auction ending in the same second late.
    buckets: dict[int, list[tuple[str, int, int, datetime]]] = {}
    for item in armed:
        buckets.setdefault(int(item[3].timestamp() / FIRE_BUCKET_S), []).append(item)
    for items in buckets.values():
        items.sort(key=lambda item: item[3])
        doorbell.send_fire([(kind, aid, version, at.isoformat()) for kind, aid, version, at in items],
                           eta=items[0][3])
    return counts


def timers_fire(*, items: list[tuple[str, int, int, str]]) -> int:
    """Fire armed timers at their times (the task arrives at the first one's ETA): starts run
    here, ends ring the auction's own queue so that the end is decided after its bids."""
    fired = 0
    waiting = sorted(((kind, auction_id, version, datetime.fromisoformat(at))
                      for kind, auction_id, version, at in items), key=lambda item: item[3])
    while waiting:
        _wait_until(waiting[0][3])
        # Everything due by now goes at once: the ends of auctions ending in the same instant
        # leave in one round trip instead of one after another (5.7 ms apart on a loaded box,
        # which made the fortieth end of a second 200 ms later than the first).
        now = clock.now()
        count = next((k for k, item in enumerate(waiting) if item[3] > now), len(waiting)) or 1
        due, waiting = waiting[:count], waiting[count:]
        ends = [(auction_id, version) for kind, auction_id, version, _ in due if kind == "end"]
        if ends:
            doorbell.send_ends(_by_owner(ends))
            fired += len(ends)
        for kind, auction_id, _, at in due:
            if kind == "start" and services.auction_start(auction_id=auction_id):
                counters.timer_lateness((clock.now() - at).total_seconds())
                fired += 1
    return fired


def _by_owner(ends: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The ends grouped by the bid worker that owns their auctions (doorbell.by_owner): the
    worker then ends its group in one task, so the fortieth of a second's ends no longer waits
    for thirty-nine Celery messages' overhead too. If the owners cannot be read, each goes alone."""
    try:
        owners = assignment.owners(auction_id for auction_id, _ in ends)
    except Exception:
        log.warning("could not read the auctions' owners; sending each end alone", exc_info=True)
        owners = {}
    return doorbell.by_owner((end, owners.get(end[0])) for end in ends)


def _wait_until(when: datetime) -> None:
    delay = (when - clock.now()).total_seconds()
    if 0 < delay <= EARLY_SLACK_S:
        time.sleep(delay)


def end_due(*, auction_id: int, end_version: int) -> bool:
    return ends_due(ends=[(auction_id, end_version)]) == 1


def ends_due(*, ends: list[tuple[int, int]]) -> int:
    """End each (auction id, end version) at its end, earliest first, each in its own
    transaction; one whose end moved since its timer was armed is left to the timer of its new
    end. Returns how many ended now."""
    versions = dict(ends)
    rows = (Auction.objects.filter(pk__in=versions).order_by("ends_at", "pk")
            .values_list("pk", "ends_at", "end_version"))
    ended = 0
    for auction_id, ends_at, version in list(rows):
        if version != versions[auction_id] and ends_at > clock.now():
            continue
        _wait_until(ends_at)
        if services.auction_end(auction_id=auction_id):
            ended += 1
            late = (clock.now() - ends_at).total_seconds()
            counters.timer_lateness(late)
            log.info("auction %s ended %.3fs after its end", auction_id, late,
                     extra={"auction_id": auction_id, "late_s": round(late, 3)})
    return ended


def bids_sweep(*, now: datetime | None = None) -> int:
    """Ring again every auction with a bid left queued too long (its doorbell was lost)."""
    now = now or clock.now()
    cutoff = now - timedelta(seconds=settings.BID_SWEEP_AFTER_S)
    stale = (
        Bid.objects.filter(status=Bid.Status.QUEUED, received_at__lt=cutoff)
        .values_list("auction_id", flat=True)
        .distinct()
    )
    auction_ids = list(stale)
    for auction_id in auction_ids:
        doorbell.ring(auction_id, force=True)
    if auction_ids:
        log.info("sweep rang %d auctions with stale bids", len(auction_ids),
                 extra={"auction_ids": auction_ids[:50]})
    return len(auction_ids)


def consumers_reconcile() -> dict[str, int]:
    active = Auction.objects.filter(
        status__in=[Auction.Status.SCHEDULED, Auction.Status.LIVE]
    ).values_list("pk", flat=True)
    return assignment.reconcile(list(active))




"""Counters and histograms that many processes write, kept in Redis and read by /metrics.

Why Redis rather than prometheus_client's multiprocess mode: that mode sums mmap files in one
directory, so it only sees the processes of one machine, while Gavel's web nodes, bid workers
and default workers run on as many machines as needed and a scrape of any one web node must tell
the whole platform's story (core.metrics). Redis is what they all share already. The price: a
pipelined round trip, sent by a thread of each process (`_Writer`) for all recordings queued
since its last one (a bid received or refused, a decided batch, a timer), and counts that start
again from zero when Redis restarts without persistence, which Prometheus's rate() and
increase() take as an ordinary counter reset.

Each family is one hash, `gavel:metrics:<name>`: a counter's fields are its label values (JSON),
a histogram's are cumulative buckets `le:<bound>`, `count` and `sum`, as the exposition wants
them, so a scrape is one HGETALL per family.

Web processes count socket events (frames dropped, resumes) in memory, and the hub writes them
every second with its open-sockets gauge (`node_report`): a slow client can cost hundreds of
drops a second, which must not cost as many Redis writes.

Recording never raises: a metric lost to a Redis blip must not fail a bid or a socket.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)

PREFIX = "gavel:metrics:"


@dataclass(frozen=True)
class Counter:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    # Label values shown as 0 before anything is counted: a series that appears only with its
    # first increment makes rate() and alerts miss that first one.
    initial: tuple[tuple[str, ...], ...] = ()

    @property
    def key(self) -> str:
        return PREFIX + self.name

    def field(self, labels: dict[str, str]) -> str:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {sorted(labels)}")
        return json.dumps([str(labels[name]) for name in self.labels])

    def samples(self, stored: dict[str, str]) -> list[tuple[dict[str, str], int]]:
        """(labels, value) for every label set recorded so far or known in advance, in a stable
        order; a counter without labels always has its one sample."""
        values = {tuple(json.loads(field)): int(n) for field, n in stored.items()}
        for known in self.initial if self.labels else ((),):
            values.setdefault(known, 0)
        return [(dict(zip(self.labels, key, strict=True)), n) for key, n in sorted(values.items())]


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return PREFIX + self.name

    def add(self, pipe: Any, values: Iterable[float]) -> None:
        """Queue the observations on `pipe`, aggregated: one HINCRBY per bucket that moved."""
        counts = [0] * len(self.buckets)
        n, total = 0, 0.0
        for value in values:
            value = max(float(value), 0.0)  # clocks of two machines: a hair below zero is zero
            n += 1
            total += value
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
        if not n:
            return
        for bound, count in zip(self.buckets, counts, strict=True):
            if count:
                pipe.hincrby(self.key, f"le:{bound}", count)
        pipe.hincrby(self.key, "count", n)
        pipe.hincrbyfloat(self.key, "sum", total)

    def samples(self, stored: dict[str, str]) -> tuple[list[tuple[str, int]], float, int]:
        """(cumulative buckets as (le, count) ending with +Inf, sum, count)."""
        count = int(stored.get("count", 0))
        buckets = [(str(bound), int(stored.get(f"le:{bound}", 0))) for bound in self.buckets]
        return [*buckets, ("+Inf", count)], float(stored.get("sum", 0.0)), count


# --- the families -------------------------------------------------------------------------

# The contract's codes (CONTRACT.md), listed here only to show their series at 0 from the start.
_REFUSALS = ("not_found", "invalid_amount", "invalid_field", "seller_cannot_bid", "auction_not_live",
             "auction_ended", "rate_limited")
_REJECTIONS = ("auction_not_live", "auction_ended", "below_minimum", "insufficient_funds", "seller_cannot_bid")

BIDS_RECEIVED = Counter("gavel_bids_received_total",
                        "Bids stored as queued (answered 202): they enter their auction's queue.", ("channel",),
                        initial=(("rest",), ("ws",)))
BIDS_REFUSED = Counter("gavel_bids_refused_total",
                       "Bids refused by the submission checks, nothing stored (the HTTP or WebSocket error code).",
                       ("reason",), initial=tuple((r,) for r in _REFUSALS))
BIDS_DECIDED = Counter("gavel_bids_decided_total",
                       "Bids decided, by outcome (accepted, rejected) and rejection reason.", ("outcome", "reason"),
                       initial=(("accepted", ""), *(("rejected", r) for r in _REJECTIONS)))
AUCTIONS_FINISHED = Counter("gavel_auctions_finished_total",
                            "Auctions made final: sold, unsold (no winner) or cancelled.", ("outcome",),
                            initial=(("sold",), ("unsold",), ("cancelled",)))
WS_FRAMES_DROPPED = Counter(
    "gavel_ws_frames_dropped_total",
    "Frames dropped instead of sent: where=socket for a client that stopped reading (its socket is then closed "
    "with 1013), where=process for a web process's full channel buffer. Clients resume from the event log.",
    ("where",), initial=(("socket",), ("process",)))
WS_SLOW_CLOSES = Counter("gavel_ws_slow_closes_total",
                         "Sockets closed with 1013 because their client fell too far behind.")
WS_RESUMES = Counter("gavel_ws_resumes_total",
                     "Resume requests served, by answer: the missing events, or a fresh snapshot.", ("answer",),
                     initial=(("events",), ("snapshot",)))
WS_REFILLS = Counter("gavel_ws_refills_total",
                     "Event-log reads that filled a gap the channel layer left in a socket's stream.")
DECISION_LATENCY = Histogram(
    "gavel_bid_decision_latency_seconds",
    "From a bid's receipt (received_at) to its decision (decided_at), observed by the decider per batch.",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
TIMER_LATENESS = Histogram("gavel_timer_lateness_seconds",
                           "How late auction starts and ends fired after their time.",
                           (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0))

COUNTERS = (BIDS_RECEIVED, BIDS_REFUSED, BIDS_DECIDED, AUCTIONS_FINISHED, WS_FRAMES_DROPPED, WS_SLOW_CLOSES,
            WS_RESUMES, WS_REFILLS)
HISTOGRAMS = (DECISION_LATENCY, TIMER_LATENESS)


# --- recording ----------------------------------------------------------------------------


def _redis():
    from tasks.redis_client import client

    return client()


class _Writer:
    """Sends recordings to Redis from a thread of its own, each time all that queued up since
    the last send in one pipeline: a bid worker's batch or a web process's intake batch no
    longer waits for a metrics round trip (it was an eighth of a bid worker's decide), and under
    load many recordings share one. A recording reaches Redis within a round trip or two;
    `flush` (a scrape, a process's exit) sends what is queued and waits for it."""

    def __init__(self) -> None:
        self._queued: list = []
        self._lock = threading.Lock()  # guards _queued and _started
        self._sending = threading.Lock()  # held while a batch is on its way
        self._wake = threading.Event()
        self._started = False

    def put(self, build) -> None:
        with self._lock:
            self._queued.append(build)
            if not self._started:  # this process's first recording
                self._started = True
                threading.Thread(target=self._run, name="gavel-metrics", daemon=True).start()
        self._wake.set()

    def flush(self) -> None:
        with self._sending:
            with self._lock:
                queued, self._queued = self._queued, []
            if not queued:
                return
            try:
                pipe = _redis().pipeline(transaction=False)
                for build in queued:
                    build(pipe)
                pipe.execute()
            except Exception:
                log.debug("metrics write failed; these counts are lost", exc_info=True)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.flush()


_writer = _Writer()
atexit.register(_writer.flush)
# A forked child (a prefork pool) starts with an empty queue and fresh locks: the parent sends
# what it queued, and a lock its writer thread held at the fork would never be released here.
os.register_at_fork(after_in_child=_writer.__init__)


def _write(build) -> None:
    _writer.put(build)


def flush() -> None:
    """Send this process's queued recordings now and wait until Redis has them."""
    _writer.flush()


def bids_received(by_channel: Mapping[str, int]) -> None:
    """Count an intake batch's stored bids, per channel, in one Redis round trip."""
    _count(BIDS_RECEIVED, "channel", by_channel)


def bids_refused(by_reason: Mapping[str, int]) -> None:
    """Count an intake batch's refused bids, per reason, in one Redis round trip."""
    _count(BIDS_REFUSED, "reason", by_reason)


def _count(counter: Counter, label: str, counts: Mapping[str, int]) -> None:
    if counts:
        _write(lambda pipe: [pipe.hincrby(counter.key, counter.field({label: value}), n)
                             for value, n in counts.items()])


class DecidedBid(Protocol):
    status: str
    reason: str | None
    received_at: datetime
    decided_at: datetime | None


def bids_decided(bids: Iterable[DecidedBid]) -> None:
    """One decided batch: its outcomes and each bid's receipt-to-decision latency, one round trip.
    Call it after the batch committed (the decision is final then, and made exactly once)."""
    outcomes: dict[tuple[str, str], int] = {}
    latencies: list[float] = []
    for bid in bids:
        key = (bid.status, bid.reason or "")
        outcomes[key] = outcomes.get(key, 0) + 1
        if bid.decided_at is not None:
            latencies.append((bid.decided_at - bid.received_at).total_seconds())

    def build(pipe) -> None:
        for (outcome, reason), n in outcomes.items():
            pipe.hincrby(BIDS_DECIDED.key, BIDS_DECIDED.field({"outcome": outcome, "reason": reason}), n)
        DECISION_LATENCY.add(pipe, latencies)

    if outcomes:
        _write(build)


def auction_finished(*, outcome: str) -> None:
    _write(lambda pipe: pipe.hincrby(AUCTIONS_FINISHED.key, AUCTIONS_FINISHED.field({"outcome": outcome}), 1))


def timer_lateness(seconds: float) -> None:
    _write(lambda pipe: TIMER_LATENESS.add(pipe, [seconds]))


# --- buffered in a web process, flushed by its hub every second ----------------------------

_buffer: dict[tuple[Counter, str], int] = {}
_buffer_lock = threading.Lock()


def buffered(counter: Counter, n: int = 1, **labels: str) -> None:
    """Count in memory; the hub's `node_report` writes it. Cheap enough for a per-frame path."""
    if n <= 0:
        return
    key = (counter, counter.field(labels))
    with _buffer_lock:
        _buffer[key] = _buffer.get(key, 0) + n


def take_buffered() -> dict[tuple[Counter, str], int]:
    global _buffer
    with _buffer_lock:
        taken, _buffer = _buffer, {}
    return taken


NODE_SOCKETS_KEY = PREFIX + "node_sockets"  # web process (host:pid) -> "<open sockets> <unix time>"


def node_report(*, node: str, open_sockets: int, now: float) -> None:
    """A web process's once-a-second report, in one round trip: its open sockets (a gauge that
    /metrics ignores once it is a few seconds old, so a dead process stops counting) and what it
    counted in memory since the last report. Raises if Redis is away; the counts are then kept
    for the next report."""
    taken = take_buffered()
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.hset(NODE_SOCKETS_KEY, node, f"{open_sockets} {now}")
        for (counter, field), n in taken.items():
            pipe.hincrby(counter.key, field, n)
        pipe.execute()
    except Exception:
        restore_buffered(taken)
        raise


def restore_buffered(taken: dict[tuple[Counter, str], int]) -> None:
    with _buffer_lock:
        for key, n in taken.items():
            _buffer[key] = _buffer.get(key, 0) + n

"""GET /metrics in Prometheus text format. Everything comes from the database and Redis, which
every process shares, so one scrape of any web node tells the truth about the whole platform.
Open on loopback; elsewhere it needs `Authorization: Bearer $METRICS_TOKEN`.

A scrape must stay cheap whatever the platform holds: one Redis round trip (every counter,
histogram and gauge kept there, core.counters), one query over the queued bids only (the index
on bid status; never all bids), one over auctions by status, and at most every
METRICS_LEDGER_CHECK_S one sum over the accounts (cached in Redis for every node). Families are
listed in docs/operations.md ("Metrics and logs").

A part that cannot be read (Redis or the database away) is reported as
`gavel_metrics_source_up{source=...} 0` and its families are left out: never a 500.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Iterable

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, JsonResponse

from core import clock, counters

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "::1"}
# Only this many auctions get their own pending-bids series (the busiest): a label per auction
# with queued bids would let a backlog over thousands of auctions blow up Prometheus.
PENDING_TOP_AUCTIONS = 20
# A web process reports its sockets every second; one silent this long is gone (or stuck).
NODE_STALE_S = 5.0
LEDGER_KEY = counters.PREFIX + "ledger"


def _allowed(request: HttpRequest) -> bool:
    if request.META.get("REMOTE_ADDR") in LOOPBACK and not request.META.get("HTTP_X_FORWARDED_FOR"):
        return True
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]

    def gauge(self, name: str, help_: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.family(name, "gauge", help_)
        self.lines.append(_line(name, value, labels))

    def add(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.lines.append(_line(name, value, labels))


# --- Redis: one pipelined round trip -----------------------------------------------------------


def _redis_part(out: _Out, now: float) -> None:
    from tasks import assignment
    from tasks.redis_client import client

    counters.flush()  # this process's own recordings first: a scrape right after a bid shows it
    redis = client()
    pipe = redis.pipeline(transaction=False)
    for family in (*counters.COUNTERS, *counters.HISTOGRAMS):
        pipe.hgetall(family.key)
    pipe.hgetall(counters.NODE_SOCKETS_KEY)
    pipe.zrangebyscore(assignment.WORKERS_KEY, now - settings.BID_WORKER_TIMEOUT_S, "+inf")
    pipe.get(assignment.TICK_KEY)
    replies = pipe.execute()
    stored = dict(zip((*counters.COUNTERS, *counters.HISTOGRAMS), replies, strict=False))
    nodes, workers, tick = replies[-3:]

    for counter in counters.COUNTERS:
        out.family(counter.name, "counter", counter.help)
        for labels, value in counter.samples(stored[counter]):
            out.add(counter.name, value, labels)
    for histogram in counters.HISTOGRAMS:
        buckets, total, count = histogram.samples(stored[histogram])
        out.family(histogram.name, "histogram", histogram.help)
        for le, n in buckets:
            out.add(f"{histogram.name}_bucket", n, {"le": le})
        out.add(f"{histogram.name}_sum", total)
        out.add(f"{histogram.name}_count", count)

    live, stale = {}, []
    for node, value in nodes.items():
        open_sockets, at = value.split()
        if now - float(at) <= NODE_STALE_S:
            live[node] = int(open_sockets)
        else:
            stale.append(node)
    if stale:
        redis.hdel(counters.NODE_SOCKETS_KEY, *stale)
    out.gauge("gavel_sockets_open", "WebSocket connections open, all web nodes.", sum(live.values()))
    out.family("gavel_sockets_open_per_node", "gauge",
               "WebSocket connections open per web process (node = host:pid), as it reported within 5 s.")
    for node in sorted(live):
        out.add("gavel_sockets_open_per_node", live[node], {"node": node})
    out.gauge("gavel_bid_workers_live", "Bid workers that heartbeated recently.", len(workers))
    out.gauge("gavel_scheduler_last_tick_age_seconds", "Seconds since beat's lifecycle tick last ran (-1: never).",
              round(now - float(tick), 3) if tick else -1)


# --- the database: the queued bids, auctions by status, the ledger ---------------------------


def _pending_part(out: _Out) -> None:
    from auctions.models import Bid

    # Only the queued bids are read (index on status): a handful normally, the backlog when
    # the bid workers fall behind, which is what this is for.
    rows = list(Bid.objects.filter(status=Bid.Status.QUEUED).order_by().values("auction_id")
                .annotate(n=Count("id"), oldest=Min("received_at")))
    now = clock.now()
    out.gauge("gavel_bids_queued", "Bids received and not yet decided, all auctions.", sum(r["n"] for r in rows))
    out.gauge("gavel_auctions_with_queued_bids", "Auctions with at least one bid waiting for a decision.", len(rows))
    oldest = min((r["oldest"] for r in rows), default=None)
    out.gauge("gavel_bids_oldest_queued_age_seconds",
              "How long the oldest queued bid has waited for its decision (its doorbell's age; 0: none waits).",
              round(max((now - oldest).total_seconds(), 0.0), 3) if oldest else 0)
    busiest = sorted(rows, key=lambda r: (-r["n"], r["auction_id"]))[:PENDING_TOP_AUCTIONS]
    out.family("gavel_auction_bids_queued", "gauge",
               f"Queued bids of the {PENDING_TOP_AUCTIONS} auctions with the most; auctions without are not listed.")
    for row in busiest:
        out.add("gavel_auction_bids_queued", row["n"], {"auction_id": str(row["auction_id"])})
    out.family("gavel_auction_bids_oldest_queued_age_seconds", "gauge",
               "Age of the oldest queued bid of each auction listed in gavel_auction_bids_queued.")
    for row in busiest:
        out.add("gavel_auction_bids_oldest_queued_age_seconds",
                round(max((now - row["oldest"]).total_seconds(), 0.0), 3), {"auction_id": str(row["auction_id"])})


def _auctions_part(out: _Out) -> None:
    from auctions.models import Auction

    out.family("gavel_auctions", "gauge", "Auctions by status.")
    for status, n in Auction.objects.order_by().values_list("status").annotate(n=Count("id")).values_list("status",
                                                                                                          "n"):
        out.add("gavel_auctions", n, {"status": status})


def _ledger_check(now: float) -> tuple[int, float]:
    """(the sum of every balance, when it was computed). P4 says it is always zero. The full
    audit (auctions.audit) reads every transfer and is far too heavy per scrape; the sum is one
    aggregate over the accounts, and even that runs at most every METRICS_LEDGER_CHECK_S across
    all nodes: the result is shared in Redis."""
    from core import ledger
    from tasks.redis_client import client

    try:
        cached = client().get(LEDGER_KEY)
    except Exception:
        cached = None  # Redis away: compute it anyway, the database may be fine
    if cached:
        value = json.loads(cached)
        return int(value["sum"]), float(value["at"])
    total = ledger.ledger_sum()
    ttl = settings.METRICS_LEDGER_CHECK_S
    if ttl > 0:
        try:
            client().set(LEDGER_KEY, json.dumps({"sum": total, "at": now}), px=int(ttl * 1000))
        except Exception:
            log.debug("could not cache the ledger check", exc_info=True)
    return total, now


def _ledger_part(out: _Out, now: float) -> None:
    total, at = _ledger_check(now)
    out.gauge("gavel_ledger_balanced", "1 when every balance sums to zero (P4), else 0.", 1 if total == 0 else 0)
    out.gauge("gavel_ledger_sum", "The sum of every account's balance, mint included; 0 when consistent.", total)
    out.gauge("gavel_ledger_checked_age_seconds", "Seconds since that sum was computed.", round(now - at, 3))


def _database_part(out: _Out, now: float) -> None:
    _pending_part(out)
    _auctions_part(out)
    _ledger_part(out, now)


def _parts(out: _Out, now: float) -> Iterable[tuple[str, bool]]:
    for source, reads in (("redis", _redis_part), ("database", _database_part)):
        mark = len(out.lines)
        try:
            reads(out, now)
        except Exception:
            log.warning("metrics: cannot read %s", source, exc_info=True)
            del out.lines[mark:]  # no half-written family
            yield source, False
        else:
            yield source, True


def render() -> str:
    out = _Out()
    up = dict(_parts(out, time.time()))
    out.family("gavel_metrics_source_up", "gauge", "1 when this scrape could read the source, else 0.")
    for source, ok in up.items():
        out.add("gavel_metrics_source_up", 1 if ok else 0, {"source": source})
    return "\n".join(out.lines) + "\n"


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return JsonResponse({"error": {"code": "forbidden", "message": "metrics need the metrics token"}}, status=403)
    return HttpResponse(render(), content_type="text/plain; version=0.0.4; charset=utf-8")

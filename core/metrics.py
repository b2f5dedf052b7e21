"""GET /metrics in Prometheus text format. Counts come from the database and Redis, which every
process shares, so one scrape of any web node tells the truth about the whole platform.
Open on loopback; elsewhere it needs `Authorization: Bearer $METRICS_TOKEN`."""

from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse

LATENESS_KEY = "gavel:metrics:timer_lateness"
SOCKETS_KEY = "gavel:metrics:sockets"
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
LOOPBACK = {"127.0.0.1", "::1"}


def timer_lateness_observe(seconds: float) -> None:
    """Record how late a start or end fired (a histogram kept in Redis, shared by all workers)."""
    from tasks.redis_client import client

    pipe = client().pipeline()
    for bound in LATENESS_BUCKETS:
        if seconds <= bound:
            pipe.hincrby(LATENESS_KEY, f"le:{bound}", 1)
    pipe.hincrby(LATENESS_KEY, "count", 1)
    pipe.hincrbyfloat(LATENESS_KEY, "sum", max(seconds, 0.0))
    pipe.execute()


def _allowed(request: HttpRequest) -> bool:
    if request.META.get("REMOTE_ADDR") in LOOPBACK and not request.META.get("HTTP_X_FORWARDED_FOR"):
        return True
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


def render() -> str:
    from auctions.models import Auction, Bid
    from tasks import assignment
    from tasks.redis_client import client

    out: list[str] = []
    by_status = dict(Bid.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    out += ["# HELP gavel_bids_received_total Bids answered 202 (every status).",
            "# TYPE gavel_bids_received_total counter",
            _line("gavel_bids_received_total", sum(by_status.values()))]
    out += ["# HELP gavel_bids_decided_total Bids decided, by outcome and reason.",
            "# TYPE gavel_bids_decided_total counter"]
    decided = (Bid.objects.exclude(status=Bid.Status.QUEUED).values("status", "reason")
               .annotate(n=Count("id")).order_by("status", "reason"))
    for row in decided:
        out.append(_line("gavel_bids_decided_total", row["n"],
                         {"outcome": row["status"], "reason": row["reason"] or ""}))
    out += ["# HELP gavel_bids_queued Bids received and not yet decided.", "# TYPE gavel_bids_queued gauge",
            _line("gavel_bids_queued", by_status.get(Bid.Status.QUEUED, 0))]
    out += ["# HELP gavel_auctions Auctions by status.", "# TYPE gavel_auctions gauge"]
    for status, n in Auction.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"):
        out.append(_line("gavel_auctions", n, {"status": status}))
    redis = client()
    # One key per web process, refreshed every second, gone 5 s after the process is.
    keys = list(redis.scan_iter(f"{SOCKETS_KEY}:*", count=1000))
    sockets = sum(int(v) for v in redis.mget(keys) if v) if keys else 0
    out += ["# HELP gavel_sockets_open WebSocket connections open, all web nodes.", "# TYPE gavel_sockets_open gauge",
            _line("gavel_sockets_open", sockets)]
    out += ["# HELP gavel_bid_workers_live Bid workers that heartbeated recently.",
            "# TYPE gavel_bid_workers_live gauge", _line("gavel_bid_workers_live", len(assignment.live_workers()))]
    tick = assignment.last_tick()
    out += ["# HELP gavel_scheduler_last_tick_age_seconds Seconds since beat's lifecycle tick last ran.",
            "# TYPE gavel_scheduler_last_tick_age_seconds gauge",
            _line("gavel_scheduler_last_tick_age_seconds", round(time.time() - tick, 3) if tick else -1)]
    hist = redis.hgetall(LATENESS_KEY)
    out += ["# HELP gavel_timer_lateness_seconds How late auction starts and ends fired after their time.",
            "# TYPE gavel_timer_lateness_seconds histogram"]
    for bound in LATENESS_BUCKETS:
        out.append(_line("gavel_timer_lateness_seconds_bucket", int(hist.get(f"le:{bound}", 0)), {"le": str(bound)}))
    out.append(_line("gavel_timer_lateness_seconds_bucket", int(hist.get("count", 0)), {"le": "+Inf"}))
    out.append(_line("gavel_timer_lateness_seconds_sum", float(hist.get("sum", 0.0))))
    out.append(_line("gavel_timer_lateness_seconds_count", int(hist.get("count", 0))))
    return "\n".join(out) + "\n"


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return JsonResponse({"error": {"code": "forbidden", "message": "metrics need the metrics token"}}, status=403)
    return HttpResponse(render(), content_type="text/plain; version=0.0.4; charset=utf-8")

"""The Django half of the fan-out benchmark: run by bench/ws_fanout.py as child processes.

    python -m bench.django_side setup   --bidders 2 --max-events N
    python -m bench.django_side publish --auction ID --users a,b --rate 5 --seconds 20

`setup` creates bidder users (with enough coins for every bid the publisher will place) and one
live auction, and prints `RESULT {json}`. `publish` places straight bids through the service
layer at a fixed rate, from alternating users with rising amounts, and decides each one at once
(`bids_decide_pending`), so every bid commits one real `bid.accepted` AuctionEvent that
realtime.publish sends to the auction's group after commit. It prints `RESULT {json}`.

Run with the environment the benchmark sets up (GAVEL_VAR_DIR or DATABASE_URL, REDIS_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    import django

    django.setup()


def cmd_setup(args: argparse.Namespace) -> dict:
    _django()
    from auctions import services
    from core import clock, ledger
    from core.users import user_register

    tag = f"{os.getpid()}{int(time.time()) % 100000}"
    users = []
    for k in range(args.bidders):
        name = f"bench{k}_{tag}"
        user_register(username=name, password="bench-pass-Xq7!long")
        # Every bid is a straight bid; a leader's hold is its amount, so the highest amount the
        # publisher will ever place is all any bidder needs.
        ledger.grant(username=name, amount=args.max_events + 10, memo="ws_fanout benchmark")
        users.append(name)
    now = clock.now()
    auction = services.auction_create(
        title=f"ws_fanout benchmark {tag}",
        starts_at=now,
        ends_at=now + timedelta(hours=6),
        starting_price=1,
        min_increment=1,
        extend_window_s=0,  # no anti-sniping extension events
        extend_by_s=0,
        now=now,
    )
    auction.refresh_from_db()
    from realtime import publish

    publish.flush()
    from django.conf import settings

    layer = settings.CHANNEL_LAYERS["default"]
    return {"auction_id": auction.pk, "users": users, "seq": auction.seq, "status": auction.status,
            "channel_layer": layer["BACKEND"], "layer_capacity": layer.get("CONFIG", {}).get("capacity"),
            "database": settings.DATABASES["default"]["ENGINE"]}


def cmd_publish(args: argparse.Namespace) -> dict:
    cpu_start = time.process_time()
    _django()
    from auctions import services
    from auctions.models import Auction
    from core.models import User
    from realtime import publish

    users = [User.objects.get(username=u) for u in args.users.split(",")]
    auction = Auction.objects.get(pk=args.auction)
    first_seq = auction.seq
    price = auction.current_price or 0
    count = int(round(args.rate * args.seconds))
    interval = 1.0 / args.rate
    service_ms: list[float] = []
    lag_ms: list[float] = []  # event `at` -> handed to Redis by realtime.publish
    late_ms: list[float] = []
    extra_events = 0
    rejected = 0
    seq = first_seq
    from auctions.models import AuctionEvent

    publish.flush(10)
    cpu_ready = time.process_time()
    t0 = time.monotonic() + 0.05
    for k in range(count):
        target = t0 + k * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        late_ms.append(max(0.0, -delay) * 1000)
        started = time.perf_counter()
        amount = price + 1
        submitted = services.bid_submit(
            auction_id=auction.pk, user=users[k % len(users)], amount=amount, channel="rest",
        )
        services.bids_decide_pending(auction_id=auction.pk)
        service_ms.append((time.perf_counter() - started) * 1000)
        # Wait until the after-commit publish has reached Redis (~0.1-1 ms), so that the lag from
        # the event's `at` to the PUBLISH is known; the socket latency minus it is fan-out time.
        publish.flush(10)
        sent = time.time()
        bid = submitted.bid
        bid.refresh_from_db(fields=["status", "seq"])
        if bid.status != "accepted":
            rejected += 1
            continue
        price = amount
        new_seq = Auction.objects.values_list("seq", flat=True).get(pk=auction.pk)
        at = AuctionEvent.objects.values_list("at", flat=True).get(auction_id=auction.pk, seq=new_seq)
        lag_ms.append((sent - at.timestamp()) * 1000)
        extra_events += (new_seq - seq) - 1  # anything beyond the one bid.accepted (proxy, extension)
        seq = new_seq
    elapsed = time.monotonic() - t0
    publish.flush(10)
    service_ms.sort()
    lag_ms.sort()
    return {
        "bids": count,
        "rejected": rejected,
        "first_seq": first_seq,
        "last_seq": seq,
        "events": seq - first_seq,
        "extra_events": extra_events,
        "elapsed_s": elapsed,
        "rate_achieved": count / elapsed if elapsed > 0 else 0.0,
        "service_ms_p50": service_ms[len(service_ms) // 2] if service_ms else None,
        "service_ms_max": service_ms[-1] if service_ms else None,
        "late_ms_max": max(late_ms) if late_ms else 0.0,
        "publish_lag_ms_p50": lag_ms[len(lag_ms) // 2] if lag_ms else None,
        "publish_lag_ms_max": lag_ms[-1] if lag_ms else None,
        "cpu_startup_s": cpu_ready - cpu_start,
        "cpu_loop_s": time.process_time() - cpu_ready,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.django_side")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--bidders", type=int, default=2)
    s.add_argument("--max-events", type=int, default=1000)
    p = sub.add_parser("publish")
    p.add_argument("--auction", type=int, required=True)
    p.add_argument("--users", required=True)
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    result = cmd_setup(args) if args.cmd == "setup" else cmd_publish(args)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Django half of the fan-out benchmark: run by bench/ws_fanout.py as child processes.

    python -m bench.django_side setup   --bidders 2 --max-events N
    python -m bench.django_side bidders --prefix hb_1a2b3c_ --count 1000 --grant 1000000000
    python -m bench.django_side publish --auction ID --users a,b --rate 5 --seconds 20
    python -m bench.django_side hot-check --auction ID [ID ...]
    python -m bench.django_side timers-check --auctions ID,ID,...

`setup` creates bidder users (with enough coins for every bid the publisher will place) and one
live auction, and prints `RESULT {json}`. `publish` places straight bids through the service
layer at a fixed rate, from alternating users with rising amounts, and decides each one at once
(`bids_decide_pending`), so every bid commits one real `bid.accepted` AuctionEvent that
realtime.publish sends to the auction's group after commit. It prints `RESULT {json}`.

`bidders` is the benchmarks' setup of their bidders (bench/hot_auction.py, timers.py,
reconnect_storm.py), in bulk: COUNT users named PREFIX0..PREFIX{COUNT-1}, each with its account and
signup bonus as registration opens them (core.ledger.account_open), a grant of GRANT coins
(core.ledger.grant, as POST /api/wallet/grants makes it) and an access token (core.tokens, the
token POST /api/auth/token issues). It prints `RESULT {"users": [[username, token], ...], ...}`.
Setup is not what the benchmarks measure; their load clients still speak only the public contract.

`hot-check` is bench/hot_auction.py's audit after a run (not a load client): it reads the tables
and prints what the checks compare, for each auction given: its bids by status and reason,
positions, the persisted event stream and its holds; then, once, the ledger sum and every
account's balance, held and available.
`timers-check` is bench/timers.py's: per auction its status, ends_at, `auction.ended` events
(how many, `at`, winner, final price), stream contiguity and settlement transfers; and the ledger.

Run with the environment the benchmark sets up (GAVEL_VAR_DIR or DATABASE_URL, REDIS_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections import Counter
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


def cmd_bidders(args: argparse.Namespace) -> dict:
    """COUNT bench users in one process: accounts, signup bonus, grant and token each, the coins
    through core.ledger inside transactions (a batch of users per transaction), so the ledger
    still sums to 0; one password hash in all (below)."""
    t0 = time.perf_counter()
    _django()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.password_validation import validate_password
    from django.db import transaction

    from core import ledger
    from core.models import User
    from core.tokens import access_token_issue
    from core.users import USERNAME_RE

    if args.count < 1 or args.batch < 1:
        raise SystemExit("--count and --batch must be at least 1")
    names = [f"{args.prefix}{k}" for k in range(args.count)]
    bad = [n for n in names if not USERNAME_RE.match(n)]
    if bad:
        raise SystemExit(f"not a valid username (core.users.USERNAME_RE): {bad[0]!r}")
    taken = list(User.objects.filter(username__in=names).values_list("username", flat=True)[:5])
    if taken:
        raise SystemExit(f"usernames taken already: {taken}")
    by = None
    if args.granted_by:
        by = User.objects.filter(username=args.granted_by).first()
        if by is None:
            raise SystemExit(f"--granted-by: no user named {args.granted_by!r}")
    # Every bench user shares ONE random password, hashed ONCE, and that hash is stored for all of
    # them. The hasher is PBKDF2 at production strength (~0.5 s of CPU per hash on a 2-core box):
    # a hash per user (register, then token, over the API) made 1,000 bidders cost ~9 minutes of
    # setup. Nobody logs in with it: the bidders get their tokens below, but it is a real,
    # working password (returned), as registration would have stored.
    password = f"Bb-{secrets.token_urlsafe(18)}-9x"
    validate_password(password)
    encoded = make_password(password)
    t_hash = time.perf_counter()
    users: list = []
    for start in range(0, len(names), args.batch):
        chunk = names[start:start + args.batch]
        with transaction.atomic():
            # As core.users.user_register: the user (its password already hashed), then its
            # account with the signup bonus from the mint. bulk_create sends no post_save, so
            # account_open here is the only opening (it is idempotent either way).
            made = User.objects.bulk_create([User(username=n, password=encoded) for n in chunk])
            if any(u.pk is None for u in made):  # a backend that returns no ids from bulk inserts
                made = list(User.objects.filter(username__in=chunk).order_by("id"))
            for user in made:
                ledger.account_open(user=user)
                if args.grant:
                    ledger.grant(username=user.username, amount=args.grant, memo=args.memo, by=by)
        users.extend(made)
    t_db = time.perf_counter()
    by_name = {u.username: u for u in users}
    pairs = [(n, access_token_issue(user=by_name[n])["access"]) for n in names]
    return {"users": pairs, "password": password, "password_hashes": 1, "grant": args.grant,
            "granted_by": by.username if by else None,
            "seconds": {"hash": round(t_hash - t0, 3), "db": round(t_db - t_hash, 3),
                        "tokens": round(time.perf_counter() - t_db, 3), "total": round(time.perf_counter() - t0, 3)}}


def make_bidders(env: dict[str, str], *, prefix: str, count: int, grant: int, memo: str,
                 granted_by: str | None = "admin", timeout: float = 600.0) -> list[tuple[str, str]]:
    """For the benchmarks' orchestrators: run `bidders` as a child with the stack's environment
    (its database and SECRET_KEY, so the tokens are the stack's) and return [(username, token)].
    SystemExit with the child's output if it fails."""
    import subprocess

    from deploy.launch import DIE_WITH_PARENT

    cmd = [sys.executable, "-m", "bench.django_side", "bidders", "--prefix", prefix, "--count", str(count),
           "--grant", str(grant), "--memo", memo] + (["--granted-by", granted_by] if granted_by else [])
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=DIE_WITH_PARENT)
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"bench.django_side bidders failed (exit {done.returncode}):\n"
                           f"{done.stdout[-1500:]}{done.stderr[-3000:]}")
    return [(name, token) for name, token in json.loads(line[len("RESULT "):])["users"]]


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


def ledger_audit() -> dict:
    """The ledger's sum and the accounts that break P4 (at most 20 of each kind)."""
    from core import ledger
    from core.models import Account, Transfer

    negative, held_mismatch, balance_mismatch, accounts = [], [], [], 0
    for a in ledger.accounts_audit():
        pk, kind, balance, held, active_holds, credited, debited = (
            a.pk, a.kind, a.balance, a.held, a.active_holds, a.credited, a.debited)
        accounts += 1
        if kind != Account.Kind.MINT and balance - held < 0:
            negative.append(pk)
        if held != active_holds:
            held_mismatch.append(pk)
        if balance != credited - debited:
            balance_mismatch.append(pk)
    return {"sum": ledger.ledger_sum(), "accounts": accounts, "negative_available": negative[:20],
            "held_mismatch": held_mismatch[:20], "balance_mismatch": balance_mismatch[:20],
            "transfers": Transfer.objects.count()}


def _platform_audit(auction_ids: list[int]) -> dict:
    """auctions.audit over the run's auctions (and the whole ledger): the invariants the fault
    suite and operators check, run at the end of every bench too."""
    from auctions import audit

    return audit.audit(auction_ids=auction_ids).as_dict()


def cmd_hot_check(args: argparse.Namespace) -> dict:
    """Per auction (bulk queries, so a hundred auctions cost what one does): bids by status and
    reason, positions, the persisted stream, the holds on it; then the ledger once (one audit query
    over every account: the ledger spans all auctions)."""
    _django()
    from django.db.models import Count, Max, Min

    from auctions.models import Auction, AuctionEvent, Bid, Participant
    from core.models import Hold

    ids = sorted(set(args.auction))
    auctions = {a.pk: a for a in Auction.objects.filter(pk__in=ids)}
    if len(auctions) != len(ids):
        raise SystemExit(f"unknown auction ids: {sorted(set(ids) - set(auctions))}")
    out = {pk: {"auction": {"id": pk, "status": a.status, "seq": a.seq, "bid_count": a.bid_count,
                            "current_price": a.current_price},
                "bids": {"total": 0, "by_status": {}, "rejected_by_reason": {}},
                "events": {"by_type": {}, "own_bid_accepted": 0}}
           for pk, a in auctions.items()}
    for row in (Bid.objects.filter(auction_id__in=ids).values("auction_id", "status", "reason")
                .annotate(n=Count("id"))):
        bids = out[row["auction_id"]]["bids"]
        bids["by_status"][row["status"]] = bids["by_status"].get(row["status"], 0) + row["n"]
        if row["status"] == Bid.Status.REJECTED:
            reason = row["reason"] or "?"
            bids["rejected_by_reason"][reason] = bids["rejected_by_reason"].get(reason, 0) + row["n"]
    contiguous = lambda agg: agg["n"] == 0 or (agg["lo"] == 1 and agg["hi"] == agg["n"] == agg["distinct"])  # noqa: E731
    empty = {"n": 0, "lo": None, "hi": None, "distinct": 0}

    def spans(model, field: str) -> dict[int, dict]:
        """Per auction: the rows' count, and min, max and distinct count of `field`."""
        rows = model.objects.filter(auction_id__in=ids).values("auction_id").annotate(
            n=Count("id"), lo=Min(field), hi=Max(field), distinct=Count(field, distinct=True))
        return {row["auction_id"]: row for row in rows}

    positions, seqs = spans(Bid, "position"), spans(AuctionEvent, "seq")
    for row in (AuctionEvent.objects.filter(auction_id__in=ids).values("auction_id", "type")
                .annotate(n=Count("id"))):
        out[row["auction_id"]]["events"]["by_type"][row["type"]] = row["n"]
    for pk, data in AuctionEvent.objects.filter(auction_id__in=ids, type="bid.accepted").values_list(
            "auction_id", "data"):
        if not data.get("proxy"):
            out[pk]["events"]["own_bid_accepted"] += 1
    holds: dict[int, list] = {pk: [] for pk in ids}
    for pk, user_id, amount in Hold.objects.filter(auction_id__in=ids, active=True).values_list(
            "auction_id", "account__user_id", "amount"):
        holds[pk].append((user_id, amount))
    maxima = {(pk, user_id): m for pk, user_id, m in Participant.objects.filter(auction_id__in=ids).values_list(
        "auction_id", "user_id", "max_amount")}
    for pk, a in auctions.items():
        pos, ev = positions.get(pk, empty), seqs.get(pk, empty)
        out[pk]["bids"].update(total=pos["n"], positions_contiguous=contiguous(pos))
        out[pk]["events"].update(total=ev["n"], gap_free=contiguous(ev), last_seq_matches=(ev["hi"] or 0) == a.seq)
        expected = [] if a.is_final or a.leader_id is None else [(a.leader_id, maxima.get((pk, a.leader_id)))]
        out[pk]["auction_holds_match_leader"] = sorted(holds[pk]) == sorted(expected)

    return {
        "auctions": {str(pk): v for pk, v in out.items()},
        "ledger": ledger_audit(),
        "platform_audit": _platform_audit(ids),
    }


def cmd_timers_check(args: argparse.Namespace) -> dict:
    _django()
    from django.db.models import Count, Max, Min

    from auctions.models import Auction, AuctionEvent
    from core.models import Transfer

    ids = [int(x) for x in args.auctions.split(",") if x]
    rows = {a["pk"]: a for a in Auction.objects.filter(pk__in=ids).values(
        "pk", "status", "ends_at", "seq", "winner__username", "final_price", "bid_count")}
    streams = {r["auction_id"]: r for r in AuctionEvent.objects.filter(auction_id__in=ids).values("auction_id")
               .annotate(n=Count("id"), lo=Min("seq"), hi=Max("seq"), distinct=Count("seq", distinct=True))}
    ended: dict[int, list] = {}
    for aid, seq, at, data in AuctionEvent.objects.filter(auction_id__in=ids, type="auction.ended").values_list(
            "auction_id", "seq", "at", "data"):
        ended.setdefault(aid, []).append({"seq": seq, "at": at.timestamp(), "data": data})
    settled: dict[int, list[int]] = {}
    for aid, amount in Transfer.objects.filter(auction_id__in=ids, kind=Transfer.Kind.SETTLEMENT).values_list(
            "auction_id", "amount"):
        settled.setdefault(aid, []).append(amount)
    out = {}
    for aid in ids:
        row = rows.get(aid)
        st = streams.get(aid)
        out[aid] = None if row is None else {
            "status": row["status"], "ends_at": row["ends_at"].timestamp(), "seq": row["seq"],
            "winner": row["winner__username"], "final_price": row["final_price"], "bid_count": row["bid_count"],
            "ended_events": ended.get(aid, []), "settlements": settled.get(aid, []),
            "stream_gap_free": bool(st) and st["lo"] == 1 and st["hi"] == st["n"] == st["distinct"] == row["seq"],
        }
    return {"auctions": out, "ledger": ledger_audit(), "platform_audit": _platform_audit(ids)}


def cmd_faults_check(args: argparse.Namespace) -> dict:
    """bench/faults.py's audit: each acknowledged bid (the ids in --acked, a JSON list) as the
    database holds it, and auctions.audit over everything."""
    _django()
    from auctions import audit
    from auctions.models import AuctionEvent, Bid

    acked = [int(x) for x in json.loads(Path(args.acked).read_text())]
    rows = {pk: (status, decided_at) for pk, status, decided_at in
            Bid.objects.filter(pk__in=acked).values_list("pk", "status", "decided_at")}
    own: Counter = Counter()
    for data in AuctionEvent.objects.filter(type="bid.accepted").values_list("data", flat=True).iterator(5000):
        if not data.get("proxy"):
            own[data.get("bid_id")] += 1
    bids = {str(pk): {"status": status, "decided_at": decided_at.timestamp() if decided_at else None,
                      "own_events": own.get(pk, 0)} for pk, (status, decided_at) in rows.items()}
    return {
        "bids": bids,
        "missing": sorted(set(acked) - set(rows))[:50],
        "undecided": sorted(pk for pk, (status, _) in rows.items() if status == Bid.Status.QUEUED)[:50],
        "doubled": sorted(pk for pk in rows if own.get(pk, 0) > 1)[:50],
        "audit": audit.audit().as_dict(),
    }


def cmd_queued(_args: argparse.Namespace) -> dict:
    _django()
    from auctions.models import Bid

    return {"queued": Bid.objects.filter(status=Bid.Status.QUEUED).count()}


def hot_ordering(auction_ids: list[int]) -> dict:
    """Per auction: bids decided out of position order (bench.baselines.ordering), how many
    decided bids the walk covered, and where the decision order was read from."""
    from bench.baselines.ordering import decision_order, ordering_violations

    out = {}
    for auction_id in auction_ids:
        positions, basis = decision_order(auction_id)
        out[str(auction_id)] = {"violations": ordering_violations(positions), "decided": len(positions),
                                "order": basis}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.django_side")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--bidders", type=int, default=2)
    s.add_argument("--max-events", type=int, default=1000)
    b = sub.add_parser("bidders", help="bench users in bulk: account, signup bonus, grant, token each")
    b.add_argument("--prefix", required=True, help="usernames are PREFIX0 .. PREFIX{COUNT-1}")
    b.add_argument("--count", type=int, required=True)
    b.add_argument("--grant", type=int, default=0, help="coins granted to each (core.ledger.grant); 0 = none")
    b.add_argument("--memo", default="bench", help="the grants' memo")
    b.add_argument("--granted-by", default=None, help="username recorded as the grants' creator (staff)")
    b.add_argument("--batch", type=int, default=200, help="users per transaction")
    p = sub.add_parser("publish")
    p.add_argument("--auction", type=int, required=True)
    p.add_argument("--users", required=True)
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=20.0)
    h = sub.add_parser("hot-check")
    h.add_argument("--auction", type=int, nargs="+", required=True, help="one or more auction ids")
    t = sub.add_parser("timers-check")
    t.add_argument("--auctions", required=True, help="auction ids, comma-separated")
    f = sub.add_parser("faults-check")
    f.add_argument("--acked", required=True, help="a JSON file: the acknowledged bid ids")
    sub.add_parser("queued")
    args = parser.parse_args(argv)
    result = {"setup": cmd_setup, "bidders": cmd_bidders, "publish": cmd_publish, "hot-check": cmd_hot_check,
              "timers-check": cmd_timers_check, "faults-check": cmd_faults_check,
              "queued": cmd_queued}[args.cmd](args)
    if args.cmd == "hot-check":
        result["ordering"] = hot_ordering(args.auction)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

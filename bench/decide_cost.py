"""What one decide costs the bid worker, in process: no web node, no Celery, no clients.

    .venv/bin/python -m bench.decide_cost --auctions 20 --bidders 10 --batch 10 --rounds 30 \\
        --database-url postgres://postgres@127.0.0.1:5432/gavel_decide --redis-url redis://127.0.0.1:6379/7

Creates AUCTIONS live auctions with BIDDERS bidders each (the database created and migrated if
missing, its tables emptied first: its name must contain "decide" or "bench"; `sqlite:///PATH`
works too), then ROUNDS times: stores BATCH queued bids on every auction
(through auctions.intake, as the web node does; every bidder bids the minimum the auction asks
before the batch, so the first bid of a batch is accepted and most others are below the minimum,
as in the many-auctions benchmark) and decides each auction's batch with
services.bids_decide_pending, as the doorbell task does, after-commit publishing included.

Prints per decide: wall ms and process CPU ms (p50, mean), the PostgreSQL backend's CPU ms (mean; read
from /proc when the server runs on this machine), SQL statements, and the statements of
one decide. The figure to compare between versions of the decider is the CPU ms and the
statement count; the many-auctions benchmark pays this once per batch of about 10 bids.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _ensure_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _drop_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_tables() -> None:
    from django.apps import apps
    from django.db import connection

    models = [m for m in apps.get_models() if m._meta.app_label in ("auctions", "core")]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(m._meta.db_table for m in models)} RESTART IDENTITY CASCADE")
        else:
            cursor.execute("PRAGMA foreign_keys = OFF")
            for model in models:
                cursor.execute(f"DELETE FROM {model._meta.db_table}")
            cursor.execute("PRAGMA foreign_keys = ON")


class _ServerCpu:
    """The CPU time of this connection's PostgreSQL backend, read from /proc when the server runs
    on this machine (None otherwise): what a decide costs the database, not only this process."""

    def __init__(self, connection) -> None:
        self.path = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                path = Path(f"/proc/{cursor.fetchone()[0]}/stat")
            if path.exists():
                self.path = path
        self.tick_ms = 1000 / os.sysconf("SC_CLK_TCK")

    def ms(self) -> float | None:
        if self.path is None:
            return None
        fields = self.path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * self.tick_ms  # utime, stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gavel_decide"))
    p.add_argument("--auctions", type=int, default=20)
    p.add_argument("--bidders", type=int, default=10)
    p.add_argument("--batch", type=int, default=10, help="queued bids per auction per round")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7"),
                   help="where the decider's after-commit publishing and metrics go")
    p.add_argument("--drop-db", action="store_true", help="drop the PostgreSQL database afterwards")
    a = p.parse_args(argv)
    os.environ["REDIS_URL"] = a.redis_url
    name = a.database_url.rsplit("/", 1)[-1]
    if "decide" not in name and "bench" not in name:
        p.error(f"{name!r}: this tool empties the database's tables, so its name must contain 'decide' or 'bench'")
    postgres = a.database_url.startswith("postgres")
    if postgres:
        _ensure_database(a.database_url)
    try:
        return _run(a)
    finally:
        if postgres and a.drop_db:
            from django.db import connections

            connections.close_all()
            _drop_database(a.database_url)


def _run(a: argparse.Namespace) -> int:
    _setup_django(a.database_url)
    logging.getLogger("auctions").setLevel(logging.WARNING)  # a log line per decide is not what is measured

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from auctions import intake, rules, selectors, services
    from auctions.models import Auction, Bid
    from core import clock, ledger
    from core.users import user_register

    _empty_tables()
    now = clock.now()
    auctions, bidders = [], {}
    for n in range(a.auctions):
        auction = services.auction_create(title=f"decide cost {n}", starts_at=now, ends_at=now + timedelta(hours=6),
                                          starting_price=1, min_increment=1, now=now)
        auctions.append(auction.pk)
        users = []
        for k in range(a.bidders):
            user = user_register(username=f"dc{n}_{k}", password="bench-pass-Xq7!long")
            ledger.grant(username=user.username, amount=10**9, memo="decide_cost")
            users.append(user)
        bidders[auction.pk] = users

    server = _ServerCpu(connection)
    wall, cpu, server_cpu, statements, example = [], [], [], [], []
    for r in range(a.rounds):
        for auction_id in auctions:
            auction = Auction.objects.get(pk=auction_id)
            ask = rules.min_next_bid(selectors.terms_of(auction), rules.State(
                status=auction.status, ends_at=auction.ends_at, current_price=auction.current_price,
                leader_id=auction.leader_id, bid_count=auction.bid_count, standings={}))
            users = bidders[auction_id]
            at = clock.now()
            intake.receive_many([
                Bid(auction_id=auction_id, bidder_id=users[(r + k) % len(users)].pk, amount=ask + k % 2,
                    client_bid_id=f"r{r}k{k}", channel="ws", received_at=at, status=Bid.Status.QUEUED)
                for k in range(a.batch)])
        # The first auction's decide is counted (CaptureQueriesContext wraps every cursor, which
        # costs CPU of its own), the others are timed.
        with CaptureQueriesContext(connection) as queries:
            assert services.bids_decide_pending(auction_id=auctions[0]) == a.batch
        statements.append(len(queries))
        if r == a.rounds // 2:
            example = [q["sql"] for q in queries.captured_queries]
        for auction_id in auctions[1:]:
            s0 = server.ms()
            t0, c0 = time.perf_counter(), time.process_time()
            decided = services.bids_decide_pending(auction_id=auction_id)
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            if s0 is not None:
                server_cpu.append(server.ms() - s0)
            assert decided == a.batch, (decided, a.batch)
    with transaction.atomic():
        assert ledger.ledger_sum() == 0

    def fig(xs: list[float]) -> str:
        return f"p50 {statistics.median(xs):.2f}, mean {statistics.fmean(xs):.2f}"

    print(f"decide_cost on {connection.vendor}: {a.auctions} auctions x {a.bidders} bidders, "
          f"batches of {a.batch}, {a.rounds} rounds = {len(wall)} decides timed")
    print(f"wall ms per decide      {fig(wall)}")
    print(f"CPU ms per decide       {fig(cpu)}  (this process: Django, psycopg, redis-py)")
    if server_cpu:
        print(f"PostgreSQL CPU ms       mean {statistics.fmean(server_cpu):.2f}  (this connection's backend, "
              f"from /proc in clock ticks: only the mean means anything)")
    elif connection.vendor == "postgresql":
        print("PostgreSQL CPU ms       not measured: the server's processes are not on this machine")
    print(f"SQL statements          {fig(statements)}")
    print("one decide's statements:")
    for q in example:
        print("   ", q[:160])
    return 0


if __name__ == "__main__":
    sys.exit(main())

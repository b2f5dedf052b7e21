"""The bid pipeline on real parts: bids received through the service the API uses, rung onto
the auction's own Celery queue, decided by real bid worker processes on real Redis (P1, P2, P3, P7)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from auctions import services
from auctions.models import Bid
from tasks import assignment, doorbell
from tasks.queues import auction_queue
from tests import invariants, procs

pytestmark = pytest.mark.slow


def _bidders(make_user, n: int):
    return [make_user(f"bidder{i}") for i in range(n)]


def _wait_all_decided(auction, timeout: float = 60.0) -> None:
    procs.wait_for(
        lambda: not Bid.objects.filter(auction=auction, status=Bid.Status.QUEUED).exists(),
        timeout=timeout, what="every bid decided",
    )


def _submit_concurrently(auction, users, per_user: int, *, seed: int = 7) -> list[Bid]:
    """Each user's thread bids rising amounts, some with hidden maxima, as fast as it can."""
    rng = random.Random(seed)
    plans = {u.pk: [(rng.randint(1, 60) * 5 + 5 * k, rng.random() < 0.3) for k in range(per_user)] for u in users}
    out: list[Bid] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(user) -> None:
        from django.db import connection

        try:
            for amount, with_max in plans[user.pk]:
                max_amount = amount + rng.randint(0, 200) if with_max else None
                result = services.bid_submit(auction_id=auction.pk, user=user, amount=amount, max_amount=max_amount)
                with lock:
                    out.append(result.bid)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_concurrent_bidders_are_decided_in_position_order_and_coins_are_conserved(stack, make_user, make_auction):
    users = _bidders(make_user, 6)
    auction = make_auction(starting_price=5, min_increment=5, lasts=120)
    bids = _submit_concurrently(auction, users, per_user=15)
    assert len(bids) == 90
    _wait_all_decided(auction)

    invariants.assert_positions_contiguous(auction)
    invariants.assert_decided_once(auction)
    invariants.assert_replay_matches(auction)
    invariants.assert_holds_match_leader(auction)
    invariants.assert_coins_conserved()
    invariants.assert_audit_clean()
    # Each decision saw every earlier position: decided_at never goes backwards with position.
    decided = list(Bid.objects.filter(auction=auction).order_by("position").values_list("decided_at", flat=True))
    assert decided == sorted(decided)


def test_duplicate_doorbells_decide_nothing_twice(stack, make_user, make_auction):
    alice, bob = _bidders(make_user, 2)
    auction = make_auction(starting_price=10, min_increment=1)
    for k in range(10):
        services.bid_submit(auction_id=auction.pk, user=(alice, bob)[k % 2], amount=10 + k)
    for _ in range(30):  # a storm of redelivered and duplicated messages
        doorbell.ring(auction.pk, force=True)
    _wait_all_decided(auction)
    for _ in range(30):
        doorbell.ring(auction.pk, force=True)
    procs.wait_for(lambda: procs_queue_empty(auction.pk), what="queue drained")

    invariants.assert_decided_once(auction)
    auction.refresh_from_db()
    assert auction.bid_count == 10 and auction.current_price == 19
    invariants.assert_coins_conserved()
    invariants.assert_audit_clean()


def procs_queue_empty(auction_id: int) -> bool:
    from tasks.redis_client import client

    return client().llen(auction_queue(auction_id)) == 0


def test_two_consumers_of_one_auction_queue_cannot_break_order(stack, make_user, make_auction):
    second = procs.bid_worker("bids3")
    try:
        procs.wait_bid_worker_live("bids3")
        users = _bidders(make_user, 4)
        auction = make_auction(starting_price=5, min_increment=5, lasts=120)
        # A failover moment: both workers consume the same queue.
        from tasks.redis_client import client

        for name in ("bids1@test", "bids3@test"):
            client().sadd(f"gavel:worker:{name}", auction.pk)
        procs.wait_for(lambda: f"auction.{auction.pk}" in second.output(), what="bids3 consuming")
        _submit_concurrently(auction, users, per_user=20, seed=11)
        for _ in range(40):
            doorbell.ring(auction.pk, force=True)
        _wait_all_decided(auction)
        invariants.assert_positions_contiguous(auction)
        invariants.assert_decided_once(auction)
        invariants.assert_replay_matches(auction)
        invariants.assert_coins_conserved()
        invariants.assert_audit_clean()
    finally:
        second.stop()


def test_bid_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(stack, make_user, make_auction):

    victim = procs.bid_worker("victim")
    try:
        procs.wait_bid_worker_live("victim")
        users = _bidders(make_user, 5)
        auction = make_auction(starting_price=5, min_increment=5, lasts=180)
        # Give the auction to the victim alone, then bid while it works.
        assignment._move(auction.pk, "victim@test", assignment.owner(auction.pk))
        procs.wait_for(lambda: f"auction.{auction.pk}" in victim.output(), what="victim consuming")

        def kill_when_busy() -> None:
            procs.wait_for(lambda: Bid.objects.filter(auction=auction).exclude(status="queued").count() >= 10,
                           what="some bids decided")
            victim.kill()

        t = threading.Thread(target=kill_when_busy)
        t.start()
        _submit_concurrently(auction, users, per_user=30, seed=3)
        t.join()
        assert not victim.alive()

        # The auction moves to the surviving worker (P7) and every bid is decided (P3).
        survivors = {"bids1@test", "bids2@test"}
        procs.wait_for(lambda: assignment.owner(auction.pk) in survivors, timeout=15, what="failover to a survivor")
        _wait_all_decided(auction, timeout=60)
        invariants.assert_positions_contiguous(auction)
        invariants.assert_decided_once(auction)
        invariants.assert_replay_matches(auction)
        invariants.assert_holds_match_leader(auction)
        invariants.assert_coins_conserved()
        invariants.assert_audit_clean()
    finally:
        victim.kill()


def test_bids_received_while_no_bid_worker_runs_are_decided_when_one_starts(stack, make_user, make_auction):
    """P3: a bid answered `queued` is decided eventually, even if no consumer exists at the time."""
    stack["bids1"].stop()
    stack["bids2"].stop()
    try:
        procs.wait_for(lambda: not assignment.live_workers(), what="no live bid worker")
        alice, bob = _bidders(make_user, 2)
        auction = make_auction(starting_price=10, min_increment=1)
        for k in range(6):
            services.bid_submit(auction_id=auction.pk, user=(alice, bob)[k % 2], amount=10 + k)
        assert Bid.objects.filter(auction=auction, status=Bid.Status.QUEUED).count() == 6
    finally:
        stack["bids1"] = procs.bid_worker("bids1")
        stack["bids2"] = procs.bid_worker("bids2")
    procs.wait_bid_worker_live("bids1")
    procs.wait_bid_worker_live("bids2")
    _wait_all_decided(auction, timeout=30)
    invariants.assert_decided_once(auction)
    auction.refresh_from_db()
    assert auction.current_price == 15 and auction.leader == bob


def _sessions_opened() -> int:
    """PostgreSQL's count of sessions ever opened to the test database (a backend that exits
    flushes its own count, so a connection closed after each task shows up here)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_bid_workers_keep_their_database_connection_across_tasks(stack, make_user, make_auction):
    """Celery's Django fixup would close the connection after every task: a new PostgreSQL
    backend per doorbell (tasks/connections.py)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL sessions; SQLite has no server sessions (CI runs this on PostgreSQL)")
    alice, bob = _bidders(make_user, 2)
    auction = make_auction(starting_price=10, min_increment=1)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=10)
    _wait_all_decided(auction)  # the worker has its connection now
    procs.wait_for(lambda: procs_queue_empty(auction.pk), what="queue drained")
    before = _sessions_opened()
    for k in range(1, 21):  # twenty doorbells, each answered on its own
        services.bid_submit(auction_id=auction.pk, user=(alice, bob)[k % 2], amount=10 + k)
        _wait_all_decided(auction)
    procs.wait_for(lambda: procs_queue_empty(auction.pk), what="queue drained")
    time.sleep(1.5)  # PostgreSQL flushes a live backend's statistics at most once a second
    opened = _sessions_opened() - before
    # Beat and the default worker's ticks also run meanwhile; with connections kept, none of
    # them needs a new session, so a handful is slack, not twenty.
    assert opened <= 5, f"{opened} PostgreSQL sessions opened for 20 doorbells"
    invariants.assert_decided_once(auction)

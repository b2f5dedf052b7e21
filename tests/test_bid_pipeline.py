"""The bid pipeline on real parts: bids received through the service the API uses, rung onto
the auction's own Celery queue, decided by real bid worker processes on real Redis (P1, P2, P3, P7)."""

from __future__ import annotations

import random
import re
import threading
import time
from datetime import timedelta

import pytest

from auctions import services
from auctions.models import Bid
from core import clock
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
    users = _bidders(make_user, 4)
    auction = make_auction(starting_price=5, min_increment=5, lasts=120)
    # A failover moment: the auction's bid worker and a stray consume the same queue.
    second = procs.stray_consumer(auction_queue(auction.pk))
    try:
        procs.wait_for(lambda: "stray@test ready" in second.output(), what="the stray consumer ready")
        procs.wait_for(lambda: assignment.owner(auction.pk), what="the auction's bid worker")
        _submit_concurrently(auction, users, per_user=20, seed=11)
        for _ in range(40):
            doorbell.ring(auction.pk, force=True)
        _wait_all_decided(auction)
        procs.wait_for(lambda: DECIDE_RAN.search(second.output()), what="the stray taking doorbells too")
        invariants.assert_positions_contiguous(auction)
        invariants.assert_decided_once(auction)
        invariants.assert_replay_matches(auction)
        invariants.assert_coins_conserved()
        invariants.assert_audit_clean()
    finally:
        second.stop()


# --- scaling out and failing over (P7): bid workers that join and leave at run time -----------

DECIDE_RAN = re.compile(r"Task tasks\.bids\.decide(?:_many)?\[[^\]]+\] succeeded")
DECIDED = re.compile(r"Task tasks\.bids\.decide(?:_many)?\[[^\]]+\] succeeded in [^:]+: (\d+)")
DECIDED_MANY = re.compile(r"Task tasks\.bids\.decide_many\[[^\]]+\] succeeded in [^:]+: (\d+)")
STOPPED = re.compile(r"bid worker \S+: now consuming \d+ auction queues; added [^;]+; stopped ([\d,]+)")


def _decided_by(proc: procs.Proc, since: int = 0) -> int:
    """How many bids the worker's decide tasks decided, by its own log (Celery logs each task's
    return value: the number of bids it decided)."""
    return sum(int(n) for n in DECIDED.findall(proc.output()[since:]))


def _stopped_by(proc: procs.Proc, since: int = 0) -> set[int]:
    """The auctions whose queues the worker stopped consuming (tasks/worker.py logs them)."""
    return {int(a) for ids in STOPPED.findall(proc.output()[since:]) for a in ids.split(",")}


def _spread_auctions(stack, make_auction, n: int) -> tuple[list, dict[int, str]]:
    """n live auctions spread over the session's two bid workers; returns them and their owners."""
    procs.wait_bid_worker_live("bids1")
    procs.wait_bid_worker_live("bids2")
    auctions = [make_auction(starting_price=5, min_increment=5, lasts=300) for _ in range(n)]
    ids = [a.pk for a in auctions]
    return auctions, procs.wait_for(
        lambda: (lambda owners: owners if set(owners.values()) == {"bids1@test", "bids2@test"} else None)(
            {a: assignment.owner(a) for a in ids}),
        what="the auctions spread over bids1 and bids2")


def _wait_joined(newcomer: procs.Proc, name: str, stack, owners: dict[int, str], since: dict[str, int],
                 share: int) -> set[int]:
    """Wait until `name` owns `share` of the auctions, consumes their queues, and the workers that
    had them stopped consuming them: from then on only `name` decides their bids."""
    worker = f"{name}@test"
    taken = procs.wait_for(lambda: (lambda mine: mine if len(mine) == share else None)(
        assignment.assigned_auctions(worker)), timeout=20, what=f"{name} to get {share} auctions")
    for auction_id in taken:
        procs.wait_for(lambda a=auction_id: f"Started consuming from auction.{a}" in newcomer.output(),
                       what=f"{name} consuming auction {auction_id}")
        previous = stack[owners[auction_id].split("@")[0]]
        procs.wait_for(lambda a=auction_id, p=previous: a in _stopped_by(p, since[p.name]),
                       what=f"{previous.name} letting auction {auction_id} go")
    return set(taken)


def test_a_bid_worker_started_at_run_time_takes_over_part_of_the_live_auctions(stack, make_user, make_auction):
    """Scaling out: the reconciler rebalances the live auctions onto a worker that joins, which
    then decides their bids (and the others none of them)."""
    alice, bob = _bidders(make_user, 2)
    since = {name: len(stack[name].output()) for name in ("bids1", "bids2")}
    auctions, owners = _spread_auctions(stack, make_auction, 6)
    joiner = procs.bid_worker("bids3")
    try:
        procs.wait_bid_worker_live("bids3")
        taken = _wait_joined(joiner, "bids3", stack, owners, since, share=2)
        loads = {w: len(assignment.assigned_auctions(f"{w}@test")) for w in ("bids1", "bids2", "bids3")}
        assert loads == {"bids1": 2, "bids2": 2, "bids3": 2}

        for auction_id in sorted(taken):
            for k in range(10):
                services.bid_submit(auction_id=auction_id, user=(alice, bob)[k % 2], amount=5 + 5 * k)
        for auction in auctions:
            _wait_all_decided(auction)

        # Celery logs a task's result just after its transaction commits: poll the log too.
        procs.wait_for(lambda: _decided_by(joiner) >= 20, timeout=10, what="bids3's log to show its 20 decisions")
        assert _decided_by(joiner) == 20
        assert _decided_by(stack["bids1"], since["bids1"]) + _decided_by(stack["bids2"], since["bids2"]) == 0
        for auction in auctions:
            invariants.assert_decided_once(auction)
            invariants.assert_replay_matches(auction)
        invariants.assert_audit_clean()
    finally:
        joiner.stop()


def test_an_intake_batch_over_several_auctions_is_decided_by_one_task_per_bid_worker(stack, make_user,
                                                                                       make_auction):
    """An intake batch's bids on four auctions spread over both bid workers: each worker gets
    one decide_many doorbell for its auctions and decides all of their bids in it (by its own
    log), each auction in position order."""
    from core import ledger

    alice, bob = _bidders(make_user, 2)
    for user in (alice, bob):
        ledger.grant(username=user.username, amount=10_000)
    since = {name: len(stack[name].output()) for name in ("bids1", "bids2")}
    auctions, owners = _spread_auctions(stack, make_auction, 4)
    submissions = [services.Submission(auction.pk, (alice, bob)[k % 2], 5 + 5 * k)
                   for k in range(3) for auction in auctions]
    answers = services.bids_submit_many(submissions)
    assert all(isinstance(answer, services.Submitted) for answer in answers), answers
    for auction in auctions:
        _wait_all_decided(auction)

    def by_decide_many(name: str) -> int:
        return sum(int(n) for n in DECIDED_MANY.findall(stack[name].output()[since[name]:]))

    # Each worker owns at least one of the four; those owning two or more got them in one task.
    grouped = sum(n for n in (sum(1 for o in owners.values() if o == f"{name}@test") for name in ("bids1", "bids2"))
                  if n > 1)
    procs.wait_for(lambda: by_decide_many("bids1") + by_decide_many("bids2") >= 3 * grouped, timeout=10,
                   what="the workers' logs to show their grouped decisions")
    assert by_decide_many("bids1") + by_decide_many("bids2") == 3 * grouped
    for auction in auctions:
        invariants.assert_decided_once(auction)
        invariants.assert_positions_contiguous(auction)
        invariants.assert_replay_matches(auction)
    invariants.assert_coins_conserved()


def _bid_until(stop: threading.Event, auction_ids: list[int], users, errors: list[BaseException]) -> threading.Thread:
    """One bidder per user, bidding on random auctions until `stop`: rising amounts, a third with
    a hidden maximum, paced so that SQLite keeps up."""

    def run(user, k: int) -> None:
        from django.db import connection

        rng = random.Random(k)
        amount = {a: 5 for a in auction_ids}
        try:
            while not stop.is_set():
                auction_id = rng.choice(auction_ids)
                amount[auction_id] += 5 * rng.randint(1, 4)
                max_amount = amount[auction_id] + 5 * rng.randint(1, 10) if rng.random() < 0.3 else None
                services.bid_submit(auction_id=auction_id, user=user, amount=amount[auction_id],
                                    max_amount=max_amount)
                time.sleep(0.02)
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(u, k)) for k, u in enumerate(users)]
    for t in threads:
        t.start()
    joiner = threading.Thread(target=lambda: [t.join() for t in threads])
    joiner.start()
    return joiner


@pytest.mark.parametrize("how, within", [("SIGTERM", 8.0), ("SIGKILL", 15.0)])
def test_a_bid_worker_stopped_mid_stream_hands_its_auctions_over_and_loses_nothing(
        stack, make_user, make_auction, how, within):
    """Failing over: a worker that owns auctions and is deciding their bids is stopped (a warm
    shutdown, or killed outright) while bidders keep bidding. Its auctions move to the others
    within seconds (a SIGTERM retires it at once; a SIGKILL is noticed when its heartbeat is
    BID_WORKER_TIMEOUT_S old), they decide the bids that come after, and every bid is decided
    once, in position order (P1, P2, P3, P7)."""
    from core import ledger

    users = _bidders(make_user, 5)
    for user in users:
        ledger.grant(username=user.username, amount=100_000)
    since = {name: len(stack[name].output()) for name in ("bids1", "bids2")}
    auctions, owners = _spread_auctions(stack, make_auction, 6)
    victim = procs.bid_worker("victim")
    stop, errors = threading.Event(), []
    bidding = None
    try:
        procs.wait_bid_worker_live("victim")
        taken = _wait_joined(victim, "victim", stack, owners, since, share=2)
        bidding = _bid_until(stop, [a.pk for a in auctions], users, errors)
        procs.wait_for(lambda: _decided_by(victim) >= 10, what="the victim deciding bids")

        stopped_at = time.monotonic()
        if how == "SIGTERM":
            victim.stop()
        else:
            victim.kill()
        survivors = {"bids1@test", "bids2@test"}
        procs.wait_for(lambda: all(assignment.owner(a) in survivors for a in taken), timeout=within,
                       what=f"the victim's auctions to move within {within:.0f} s of its {how}")
        handed_over = time.monotonic() - stopped_at
        moved_at = clock.now()
        # The survivors decide what is bid on those auctions from now on, while bidding goes on.
        procs.wait_for(lambda: all(
            Bid.objects.filter(auction_id=a, received_at__gt=moved_at).exclude(status=Bid.Status.QUEUED).count() >= 5
            for a in taken), timeout=30, what="bids on the moved auctions decided after the handover")
    finally:
        stop.set()
        if bidding is not None:
            bidding.join()
        victim.kill()
    assert not errors, errors
    for auction in auctions:
        _wait_all_decided(auction)
        invariants.assert_positions_contiguous(auction)
        invariants.assert_decided_once(auction)
        invariants.assert_replay_matches(auction)
        invariants.assert_holds_match_leader(auction)
        decided = list(Bid.objects.filter(auction=auction).order_by("position").values_list("decided_at", flat=True))
        assert decided == sorted(decided), "a later position was decided before an earlier one"
    invariants.assert_coins_conserved()
    invariants.assert_audit_clean()
    print(f"{how}: auctions handed over {handed_over:.1f} s after the stop")


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


def test_ringing_several_auctions_at_once_sends_one_doorbell_each_until_answered(monkeypatch, settings):
    """doorbell.ring_many (an intake batch's auctions): marks in one round trip on the real Redis,
    a message for each auction not rung already, none for one whose doorbell is on its way."""
    sent = []
    monkeypatch.setattr(doorbell, "_send_many",
                        lambda groups, *, forced=False: sent.extend(a for group in groups for a in group))
    ids = [990_001, 990_002, 990_003]
    for auction_id in ids:
        doorbell.answered(auction_id)
    doorbell.ring(ids[1])
    assert sent == [ids[1]]
    doorbell.ring_many(ids)
    assert sorted(sent[1:]) == [ids[0], ids[2]]
    doorbell.ring_many(ids)
    assert len(sent) == 3
    doorbell.answered(ids[2])
    doorbell.ring_many(ids)
    assert len(sent) == 4 and sent[3] == ids[2]


def _broker():
    """The broker's Redis, where Celery's messages are, even while a test keeps Gavel's own keys
    elsewhere (own_redis)."""
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)


def _queued(auction_id: int) -> list[dict]:
    import json

    return [json.loads(message) for message in _broker().lrange(auction_queue(auction_id), 0, -1)]


def _args(message: dict) -> list:
    """A queued Celery message's task arguments (its body: [args, kwargs, embed], in base64)."""
    import base64
    import json

    assert message["properties"]["body_encoding"] == "base64"
    return json.loads(base64.b64decode(message["body"]))[0]


@pytest.fixture
def fresh_bells(own_redis):
    """Auctions 990_011..990_016 with no doorbell mark, no queued message and no owner. The marks
    and owners are on the test's own Redis: the session's beat reconciles the assignment in the
    shared one every second and would drop owners a test set there."""
    ids = list(range(990_011, 990_017))

    def clean():
        _broker().delete(*(auction_queue(auction_id) for auction_id in ids))

    clean()
    yield ids
    clean()


def test_an_intake_batch_rings_each_auction_with_one_celery_message_on_its_queue(fresh_bells):
    """doorbell.ring_many sends its messages in one kombu producer batch: with no owner known,
    each auction's queue on the real broker holds one decide message for that auction, as a bid
    worker will read it."""
    ids = fresh_bells[:3]
    doorbell.ring_many(ids)
    for auction_id in ids:
        [message] = _queued(auction_id)
        assert message["headers"]["task"] == doorbell.DECIDE_TASK
        assert message["headers"]["argsrepr"] == repr([auction_id])
        assert message["properties"]["delivery_info"]["routing_key"] == auction_queue(auction_id)


def test_an_intake_batch_rings_each_bid_worker_once_for_all_its_auctions(fresh_bells):
    """ring_many reads the owners in the marks' round trip and sends one decide_many per bid
    worker, on the queue of its first auction; an auction without a known owner still gets its
    own decide, and one whose doorbell is already on its way is left out of its group."""
    from tasks import assignment
    from tasks.redis_client import client

    a1, b1, a2, lone, a3, b2 = fresh_bells
    client().hset(assignment.ASSIGN_KEY, mapping={str(a1): "bids-a@h", str(a2): "bids-a@h", str(a3): "bids-a@h",
                                                  str(b1): "bids-b@h", str(b2): "bids-b@h"})
    doorbell.ring(a3)
    doorbell.ring_many(fresh_bells)
    [bell_a3] = _queued(a3)
    assert bell_a3["headers"]["task"] == doorbell.DECIDE_TASK  # rung alone before
    for group in ([a1, a2], [b1, b2]):
        # One message, on the queue of whichever of the group came first (ring_many shuffles).
        [message] = [m for auction_id in group for m in _queued(auction_id)]
        assert message["headers"]["task"] == doorbell.DECIDE_MANY_TASK
        [carried] = _args(message)
        assert sorted(carried) == group
        assert message["properties"]["delivery_info"]["routing_key"] == auction_queue(carried[0])
    [alone] = _queued(lone)
    assert alone["headers"]["task"] == doorbell.DECIDE_TASK
    assert all(client().exists(doorbell._bell_key(auction_id)) for auction_id in fresh_bells)


def test_a_bid_worker_gets_its_many_auctions_in_groups_of_at_most_group_most(monkeypatch, own_redis):
    """One long group would hold the worker's other doorbells behind it: a batch ringing more of
    one worker's auctions than doorbell.GROUP_MOST sends them in several groups, each once."""
    from tasks import assignment

    sent: list[list[int]] = []
    monkeypatch.setattr(doorbell, "_send_many", lambda groups, *, forced=False: sent.extend(groups))
    ids = list(range(990_051, 990_051 + doorbell.GROUP_MOST + 2))
    own_redis.hset(assignment.ASSIGN_KEY, mapping={str(auction_id): "bids-a@h" for auction_id in ids})
    doorbell.ring_many(ids)
    assert sorted(len(group) for group in sent) == [2, doorbell.GROUP_MOST]
    assert sorted(auction_id for group in sent for auction_id in group) == ids


def test_a_batch_of_doorbells_the_broker_refuses_clears_their_marks(monkeypatch, caplog):
    """If the broker takes none of a batch, each auction's mark goes, so the next bid (or the
    sweep) rings again instead of waiting out DOORBELL_TTL_S."""
    from tasks.redis_client import client

    ids = [990_021, 990_022]
    for auction_id in ids:
        doorbell.answered(auction_id)

    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(doorbell._app(), "send_task", refuse)
    doorbell.ring_many(ids)
    assert [client().exists(doorbell._bell_key(auction_id)) for auction_id in ids] == [0, 0]
    assert "could not ring auctions" in caplog.text


def test_a_timer_sends_the_ends_due_together_in_one_batch_and_waits_for_the_later_ones(monkeypatch):
    """lifecycle.timers_fire: ends due at the same instant leave in one send_ends call (one
    round trip), in time order, grouped by the bid worker that owns their auctions (one task
    each; an auction without a known owner alone); one due later waits for its time, never
    goes early."""
    from auctions import lifecycle
    from tasks import assignment

    sent: list[tuple[float, list]] = []
    monkeypatch.setattr(doorbell, "send_ends", lambda groups: sent.append((time.monotonic(), list(groups))))
    owned = {1: "bids-a@h", 2: "bids-b@h", 3: "bids-a@h", 4: "bids-a@h", 5: None}
    monkeypatch.setattr(assignment, "owners", lambda ids: {auction_id: owned[auction_id] for auction_id in ids})
    now = clock.now()
    later = now + timedelta(milliseconds=300)
    items = [("end", 3, 1, now.isoformat()), ("end", 1, 2, (now - timedelta(milliseconds=5)).isoformat()),
             ("end", 4, 1, later.isoformat()), ("end", 2, 1, now.isoformat()), ("end", 5, 7, now.isoformat())]
    assert lifecycle.timers_fire(items=items) == 5
    assert [groups for _, groups in sent] == [[[(1, 2), (3, 1)], [(2, 1)], [(5, 7)]], [[(4, 1)]]]
    assert clock.now() >= later


def test_a_timer_sends_each_end_alone_when_the_owners_cannot_be_read(monkeypatch):
    from auctions import lifecycle
    from tasks import assignment

    def down(ids):
        raise ConnectionError("redis down")

    sent: list[list] = []
    monkeypatch.setattr(doorbell, "send_ends", sent.append)
    monkeypatch.setattr(assignment, "owners", down)
    at = clock.now().isoformat()
    assert lifecycle.timers_fire(items=[("end", 1, 1, at), ("end", 2, 1, at)]) == 2
    assert sent == [[[(1, 1)], [(2, 1)]]]


def test_owners_reads_each_auctions_bid_worker(own_redis):
    from tasks import assignment

    own_redis.hset(assignment.ASSIGN_KEY, mapping={"990041": "bids-a@h", "990042": "bids-b@h"})
    assert assignment.owners([990041, 990043, 990042]) == {990041: "bids-a@h", 990043: None, 990042: "bids-b@h"}
    assert assignment.owners([]) == {}


def test_ends_sent_together_each_reach_their_auctions_queue():
    """doorbell.send_ends on the real broker: one end_many message per group, on the queue of
    the group's first auction, carrying the whole group."""
    import json

    from tasks.redis_client import client

    groups = [[(990_031, 1), (990_033, 2)], [(990_032, 3)]]
    queues = [auction_queue(auction_id) for auction_id in (990_031, 990_032, 990_033)]
    client().delete(*queues)
    try:
        doorbell.send_ends(groups)
        for group in groups:
            queued = client().lrange(auction_queue(group[0][0]), 0, -1)
            assert len(queued) == 1
            headers = json.loads(queued[0])["headers"]
            assert (headers["task"], headers["argsrepr"]) == (doorbell.ENDS_TASK,
                                                              repr([[list(end) for end in group]]))
        assert client().llen(auction_queue(990_033)) == 0
        # Published through the anonymous exchange without declaring the queue (no binding
        # written on the way: a round trip per new queue; doorbell._no_declare).
        assert not any(client().exists(f"_kombu.binding.{queue}") for queue in queues)
    finally:
        client().delete(*queues)

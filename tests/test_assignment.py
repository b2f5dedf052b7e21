"""The assignment of auctions to bid workers (tasks.assignment), without processes: the plan as a
pure function, then reconcile and an operator's move against a Redis of the test's own (the
session's live workers reconcile the shared one). The real workers following it are
tests/test_bid_pipeline.py's."""

from __future__ import annotations

import time

from tasks import assignment
from tasks.assignment import Move, plan_moves


def _loads(active: set[int], live: list[str], assigned: dict[int, str], moves: list[Move]) -> dict[str, int]:
    after = dict(assigned)
    for m in moves:
        if m.to is None:
            after.pop(m.auction_id, None)
        else:
            after[m.auction_id] = m.to
    assert set(after) == active
    return {w: sum(1 for owner in after.values() if owner == w) for w in live}


# --- the plan ----------------------------------------------------------------------------------


def test_a_worker_that_joins_gets_a_share_and_the_others_keep_the_rest():
    assigned = {a: ("w1", "w2", "w3")[a % 3] for a in range(1, 10)}  # 3 each
    live = ["w1", "w2", "w3", "w4"]

    moves = plan_moves(active=set(assigned), live=live, assigned=assigned, pins={})

    assert {m.reason for m in moves} == {"rebalance"}
    assert all(m.to == "w4" for m in moves)
    assert len(moves) == 2  # 3, 2, 2, 2: the fewest moves that balance
    assert sorted(_loads(set(assigned), live, assigned, moves).values()) == [2, 2, 2, 3]


def test_balanced_loads_move_nothing():
    assigned = {1: "w1", 2: "w1", 3: "w2", 4: "w3", 5: "w3"}  # 2, 1, 2: within one of each other

    assert plan_moves(active=set(assigned), live=["w1", "w2", "w3"], assigned=assigned, pins={}) == []


def test_a_silent_workers_auctions_go_to_the_least_loaded_live_ones():
    assigned = {1: "w1", 2: "w1", 3: "w2", 4: "gone", 5: "gone", 6: "gone"}
    live = ["w1", "w2"]

    moves = plan_moves(active=set(assigned), live=live, assigned=assigned, pins={})

    assert [(m.auction_id, m.reason) for m in moves] == [(4, "orphaned"), (5, "orphaned"), (6, "orphaned")]
    assert _loads(set(assigned), live, assigned, moves) == {"w1": 3, "w2": 3}


def test_unassigned_auctions_are_placed_and_inactive_ones_dropped():
    assigned = {1: "w1", 2: "w2", 9: "w1"}

    moves = plan_moves(active={1, 2, 3}, live=["w1", "w2"], assigned=assigned, pins={})

    assert Move(9, None, "w1", "inactive") in moves
    assert Move(3, "w1", None, "orphaned") in moves  # w1 is down to one once 9 is dropped; ties go by name


def test_pinned_auctions_stay_where_the_operator_put_them():
    assigned = {1: "w1", 2: "w1", 3: "w1", 4: "w1"}
    pins = {1: "w1", 2: "w1", 3: "w1"}

    moves = plan_moves(active=set(assigned), live=["w1", "w2"], assigned=assigned, pins=pins)

    assert moves == [Move(4, "w2", "w1", "rebalance")]
    # All pinned: nothing can move, and the plan still ends.
    assert plan_moves(active={1, 2, 3}, live=["w1", "w2"], assigned={1: "w1", 2: "w1", 3: "w1"}, pins=pins) == []


def test_a_pin_to_a_dead_worker_does_not_keep_the_auction_there():
    moves = plan_moves(active={1}, live=["w2"], assigned={1: "w1"}, pins={1: "w1"})

    assert moves == [Move(1, "w2", "w1", "orphaned")]


def test_a_rebalancing_pass_is_bounded_and_the_next_one_goes_on():
    assigned = {a: "w1" for a in range(1, 101)}
    live = ["w1", "w2"]

    first = plan_moves(active=set(assigned), live=live, assigned=assigned, pins={}, limit=10)
    assert len(first) == 10
    after = {**assigned, **{m.auction_id: m.to for m in first}}
    second = plan_moves(active=set(assigned), live=live, assigned=after, pins={}, limit=100)
    assert _loads(set(assigned), live, after, second) == {"w1": 50, "w2": 50}


def test_the_plan_is_the_same_whoever_makes_it():
    assigned = {a: ("w1", "w2")[a % 2] for a in range(1, 30)}
    kwargs = dict(active=set(assigned) | {40, 41}, live=["w3", "w1", "w2"], assigned=assigned, pins={})

    assert plan_moves(**kwargs) == plan_moves(**{**kwargs, "live": ["w2", "w3", "w1"]})


# --- applied to Redis -------------------------------------------------------------------------


def test_reconcile_moves_auctions_to_a_new_worker_and_each_worker_set_follows(own_redis):
    now = time.time()
    for name in ("w1", "w2"):
        assignment.heartbeat(name, now=now)
    active = list(range(1, 9))
    assignment.reconcile(active)
    assert sorted(len(assignment.assigned_auctions(w)) for w in ("w1", "w2")) == [4, 4]

    assignment.heartbeat("w3", now=now)
    counts = assignment.reconcile(active)

    assert counts["rebalance"] == 2
    sets = {w: assignment.assigned_auctions(w) for w in ("w1", "w2", "w3")}
    assert sorted(len(s) for s in sets.values()) == [2, 3, 3]
    assert set().union(*sets.values()) == set(active)
    assert all(assignment.owner(a) == w for w, s in sets.items() for a in s)
    assert assignment.reconcile(active)["rebalance"] == 0  # settled: the next pass moves nothing


def test_an_operators_move_is_pinned_until_its_worker_goes(own_redis):
    now = time.time()
    for name in ("w1", "w2"):
        assignment.heartbeat(name, now=now)
    assignment.reconcile([1, 2, 3, 4])
    target = "w2" if assignment.owner(1) == "w1" else "w1"

    assignment.move(1, target)
    assignment.move(2, target)
    assignment.move(3, target)
    assignment.reconcile([1, 2, 3, 4])
    assert {a for a in (1, 2, 3) if assignment.owner(a) == target} == {1, 2, 3}
    assert 1 not in assignment.assigned_auctions("w2" if target == "w1" else "w1")

    assignment.retire(target)
    assignment.reconcile([1, 2, 3, 4])
    assert {assignment.owner(a) for a in (1, 2, 3, 4)} == {"w2" if target == "w1" else "w1"}
    assert assignment.pinned() == {}


def test_a_move_planned_from_a_stale_read_is_skipped(own_redis):
    assignment.heartbeat("w1")
    assignment.heartbeat("w2")
    assignment.move(7, "w1")

    assert assignment._move(7, "w2", None) is False  # planned as if nobody owned it
    assert assignment.owner(7) == "w1" and assignment.assigned_auctions("w2") == set()


def _sets_follow_the_hash(workers) -> bool:
    owners = assignment.assignments()
    return all(assignment.assigned_auctions(w) == {a for a, o in owners.items() if o == w} for w in workers)


def test_overlapping_reconciles_leave_every_auction_in_its_owners_set(own_redis, monkeypatch):
    """After a Redis outage, beat's queued reconciles arrive together and overlap: one that read
    only w1 alive finishes after another has seen w2's first heartbeat and given it auctions.
    The slow one must not take w2's auctions from its set: w2 consumes what its set holds, and
    no later plan moves an auction whose owner is alive."""
    assignment.heartbeat("w1")
    active = [1, 2, 3, 4]
    assignment.reconcile(active)
    plan = assignment.plan_moves
    overlapped = []

    def plan_while_another_reconciles(**kwargs):
        if not overlapped:  # this pass has read its live workers: only w1
            overlapped.append(True)
            assignment.heartbeat("w2")
            assignment.reconcile(active)
        return plan(**kwargs)

    monkeypatch.setattr(assignment, "plan_moves", plan_while_another_reconciles)
    assignment.reconcile(active)

    given_to_w2 = {a for a, owner in assignment.assignments().items() if owner == "w2"}
    assert given_to_w2, "the overlapping reconcile should have balanced some auctions onto w2"
    assert assignment.assigned_auctions("w2") == given_to_w2
    assert _sets_follow_the_hash(["w1", "w2"])


def test_repair_sets_restores_a_missing_member_and_empties_a_gone_workers_set(own_redis):
    assignment.heartbeat("w1")
    assignment.reconcile([1, 2])
    client = assignment.client()
    client.srem("gavel:worker:w1", 2)  # lost: w1 owns auction 2 but would not consume it
    client.sadd("gavel:worker:gone", 1, 9)  # left behind by a worker nobody assigns to

    assert assignment.repair_sets() == 3

    assert assignment.assigned_auctions("w1") == {1, 2}
    assert assignment.assigned_auctions("gone") == set()
    assert assignment.repair_sets() == 0

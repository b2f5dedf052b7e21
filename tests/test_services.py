"""Auction services against the database, without Celery: the fence (P5), cancel, settlement,
buy-now, reserve, anti-sniping and idempotency, called the way tasks and views call them."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auctions import intake, rules, selectors, services
from auctions.models import Auction, AuctionEvent, Bid, Participant
from core import clock, ledger
from core.errors import Conflict, Forbidden, InvalidInput
from core.models import Account, Hold, Transfer, User
from tests import invariants
from tests.locks import in_thread, wait_until_blocked


def _types(auction) -> list[str]:
    return list(AuctionEvent.objects.filter(auction=auction).order_by("seq").values_list("type", flat=True))


def test_a_bid_received_before_the_end_is_decided_before_the_auction_ends(make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction(lasts=60, extend_window_s=0)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=25, now=auction.ends_at - timedelta(milliseconds=1))
    assert services.auction_end(auction_id=auction.pk, now=auction.ends_at + timedelta(milliseconds=200))
    auction.refresh_from_db()
    assert auction.status == "ended" and auction.winner == alice and auction.final_price == 25
    assert _types(auction) == ["auction.started", "bid.accepted", "auction.ended"]
    invariants.assert_coins_conserved()


def test_a_bid_received_at_the_end_is_refused_and_nothing_is_stored(make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction(lasts=60)
    with pytest.raises(Conflict) as refused:
        services.bid_submit(auction_id=auction.pk, user=alice, amount=25, now=auction.ends_at)
    assert refused.value.code == "auction_ended" and refused.value.status == 409
    assert not Bid.objects.filter(auction=auction).exists()
    assert auction.intake.last_position == 0


def test_an_end_that_comes_before_ends_at_does_nothing(make_user, make_auction):
    auction = make_auction(lasts=60)
    assert not services.auction_end(auction_id=auction.pk, now=auction.ends_at - timedelta(milliseconds=1))
    assert Auction.objects.get(pk=auction.pk).status == "live"


def test_an_end_called_twice_ends_and_pays_once(make_user, make_auction):
    alice, seller = make_user("alice"), make_user("seller")
    auction = make_auction(seller="seller", extend_window_s=0)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=40)
    services.bids_decide_pending(auction_id=auction.pk)
    later = auction.ends_at + timedelta(seconds=1)
    assert services.auction_end(auction_id=auction.pk, now=later)
    assert not services.auction_end(auction_id=auction.pk, now=later)
    assert Transfer.objects.filter(auction_id=auction.pk, kind="settlement").count() == 1
    assert _types(auction).count("auction.ended") == 1
    alice.account.refresh_from_db()
    seller.account.refresh_from_db()
    assert (alice.account.balance, alice.account.held, seller.account.balance) == (960, 0, 1040)


def test_ends_due_together_end_each_due_auction_once_and_leave_a_moved_end_to_its_new_timer(make_user,
                                                                                         make_auction):
    """lifecycle.ends_due, what a bid worker runs for a group of ends fired at one instant."""
    from auctions import lifecycle

    alice = make_user("alice")
    sold, unsold, moved = (make_auction(lasts=1.2, extend_window_s=0) for _ in range(3))
    services.bid_submit(auction_id=sold.pk, user=alice, amount=30)
    armed_version = moved.end_version
    services.auction_reschedule_end(auction_id=moved.pk, ends_at=clock.now() + timedelta(seconds=60))
    ends = [(a.pk, a.end_version if a is not moved else armed_version) for a in (unsold, moved, sold)]
    assert lifecycle.ends_due(ends=ends) == 2  # waits out the ends (< 1 s away), never early
    assert lifecycle.ends_due(ends=ends) == 0
    for a in (sold, unsold, moved):
        a.refresh_from_db()
    assert (sold.status, sold.winner, sold.final_price) == ("ended", alice, 30)
    assert sold.ended_at >= sold.ends_at and unsold.ended_at >= unsold.ends_at
    assert (unsold.status, unsold.winner, moved.status) == ("ended", None, "live")
    assert [_types(a).count("auction.ended") for a in (sold, unsold, moved)] == [1, 1, 0]
    invariants.assert_coins_conserved()


@pytest.mark.django_db(transaction=True)
def test_an_end_that_pays_the_seller_nothing_does_not_wait_for_the_sellers_account(make_user, make_auction):
    """Another of the seller's auctions settling holds the seller's account row until it commits;
    an end that pays the seller nothing does not queue behind it (one seller's auctions ending
    in the same second on two bid workers waited for each other's lock)."""
    if connection.vendor != "postgresql":
        pytest.skip("a row lock held by another session: SQLite locks the whole database for a writer")
    alice, seller = make_user("alice"), make_user("seller")
    auction = make_auction(seller="seller", reserve_price=500, extend_window_s=0)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=40)
    services.bids_decide_pending(auction_id=auction.pk)
    locked, release = threading.Event(), threading.Event()

    def hold_the_sellers_account() -> None:
        try:
            with transaction.atomic():
                Account.objects.select_for_update().get(user=seller)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_sellers_account)
    holder.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:  # waiting on the lock would raise instead of hanging
            cursor.execute("SET lock_timeout = '2s'")
        assert services.auction_end(auction_id=auction.pk, now=auction.ends_at)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        release.set()
        holder.join(30)
    auction.refresh_from_db()
    alice.account.refresh_from_db()
    assert (auction.status, auction.winner, auction.final_price) == (Auction.Status.ENDED, None, None)
    assert (alice.account.balance, alice.account.held) == (1000, 0)
    invariants.assert_coins_conserved()


@pytest.mark.django_db(transaction=True)
def test_a_decide_that_waits_for_a_bidders_account_decides_on_what_that_transaction_committed(
        make_user, make_auction):
    """A decide reads its bids, standings and accounts in one statement (on PostgreSQL). When
    another transaction holds a bidder's account (another auction's decide placing a hold), the
    decide waits for it and must then see the balance that transaction committed, not the one
    of its statement's snapshot: here 50 coins left, too few for the bid of 100."""
    if connection.vendor != "postgresql":
        pytest.skip("a row lock held by another session: SQLite locks the whole database for a writer")
    alice = make_user("alice")
    auction, other = make_auction(), make_auction()
    # Stored without a doorbell: a bid worker of this run must not decide it before the test does.
    assert intake.receive(auction_id=auction.pk, bidder_id=alice.pk, amount=100, max_amount=None,
                          client_bid_id=None, channel="rest", received_at=clock.now())
    locked, release = threading.Event(), threading.Event()

    def hold_on_another_auction() -> None:
        try:
            with transaction.atomic():
                accounts = ledger.LockedAccounts(auction_id=other.pk, user_ids={alice.pk})
                accounts.move_hold(from_user_id=None, to_user_id=alice.pk, amount=950)
                accounts.write()
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_on_another_auction)
    holder.start()
    decider = None
    try:
        assert locked.wait(10)
        decider, decided = in_thread(lambda: services.bids_decide_pending(auction_id=auction.pk))
        wait_until_blocked("the decide")  # for alice's account row
    finally:
        release.set()
        holder.join(30)
        if decider is not None:
            decider.join(30)
    # The decide finished (a bid worker of this run may have swept the bid first).
    assert "value" in decided, decided
    bid = Bid.objects.get(auction=auction)
    assert (bid.status, bid.reason) == (Bid.Status.REJECTED, rules.INSUFFICIENT_FUNDS)
    alice.account.refresh_from_db()
    assert (alice.account.balance, alice.account.held) == (1000, 950)
    invariants.assert_coins_conserved()


def test_without_a_seller_the_house_is_paid(make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction(extend_window_s=0)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=40)
    services.auction_end(auction_id=auction.pk, now=auction.ends_at + timedelta(seconds=1))
    assert ledger.system_account(Account.Kind.HOUSE).balance == 40


def test_deciding_again_decides_nothing_twice(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=20, max_amount=100)
    services.bid_submit(auction_id=auction.pk, user=bob, amount=50)
    assert services.bids_decide_pending(auction_id=auction.pk) == 2
    assert services.bids_decide_pending(auction_id=auction.pk) == 0
    auction.refresh_from_db()
    assert (auction.current_price, auction.leader, auction.bid_count, auction.seq) == (55, alice, 3, 4)
    invariants.assert_decided_once(auction)
    invariants.assert_holds_match_leader(auction)


def test_a_bid_pending_when_the_auction_is_cancelled_is_rejected_not_live(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction()
    services.bid_submit(auction_id=auction.pk, user=alice, amount=30)
    services.bids_decide_pending(auction_id=auction.pk)
    pending = services.bid_submit(auction_id=auction.pk, user=bob, amount=50).bid
    cancelled = services.auction_cancel(auction_id=auction.pk)
    assert cancelled.status == "cancelled"
    pending.refresh_from_db()
    assert (pending.status, pending.reason) == ("rejected", "auction_not_live")
    assert not Hold.objects.filter(auction_id=auction.pk, active=True).exists()
    assert not Transfer.objects.filter(auction_id=auction.pk).exists()
    assert _types(auction)[-1] == "auction.cancelled"
    with pytest.raises(Conflict):
        services.auction_cancel(auction_id=auction.pk)
    invariants.assert_coins_conserved()


def test_buy_now_ends_at_once_and_the_winner_pays_the_buy_now_price(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    make_user("seller")
    auction = make_auction(seller="seller", starting_price=10, buy_now_price=300)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=350)
    late = services.bid_submit(auction_id=auction.pk, user=bob, amount=400).bid
    services.bids_decide_pending(auction_id=auction.pk)
    auction.refresh_from_db()
    assert (auction.status, auction.winner, auction.final_price) == ("ended", alice, 300)
    late.refresh_from_db()
    assert (late.status, late.reason) == ("rejected", "auction_ended")
    assert _types(auction) == ["auction.started", "bid.accepted", "auction.ended"]
    alice.account.refresh_from_db()
    assert (alice.account.balance, alice.account.held) == (700, 0)
    invariants.assert_coins_conserved()


def test_a_reserve_not_met_ends_without_a_winner_and_moves_no_coins(make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction(reserve_price=500, extend_window_s=0)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=100)
    services.auction_end(auction_id=auction.pk, now=auction.ends_at + timedelta(seconds=1))
    auction.refresh_from_db()
    assert (auction.winner, auction.final_price) == (None, None)
    ended = AuctionEvent.objects.get(auction=auction, type="auction.ended")
    assert ended.data == {"winner": None, "final_price": None, "reserve_met": False}
    assert not Transfer.objects.filter(auction_id=auction.pk).exists()
    alice.account.refresh_from_db()
    assert (alice.account.balance, alice.account.held) == (1000, 0)


def test_a_bid_in_the_window_extends_the_end_up_to_the_hard_close(make_user, make_auction, settings):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(lasts=60, extend_window_s=30, extend_by_s=40)
    received = auction.ends_at - timedelta(seconds=10)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=20, now=received)
    services.bids_decide_pending(auction_id=auction.pk)
    auction.refresh_from_db()
    assert auction.ends_at == received + timedelta(seconds=40)
    assert auction.end_version == 1
    assert _types(auction)[-1] == "auction.extended"
    # An end timer armed for the old end finds the auction still running.
    assert not services.auction_end(auction_id=auction.pk, now=received + timedelta(seconds=11))
    # Repeated sniping can push the end no further than the hard close.
    for k in range(30):
        at = auction.ends_at - timedelta(seconds=1)
        services.bid_submit(auction_id=auction.pk, user=(bob, alice)[k % 2], amount=30 + k, now=at)
        services.bids_decide_pending(auction_id=auction.pk)
        auction.refresh_from_db()
    assert auction.ends_at == auction.hard_close_at
    assert auction.hard_close_at - (received + timedelta(seconds=10)) == timedelta(seconds=settings.MAX_EXTENSION)


def test_a_repeated_client_bid_id_creates_nothing_and_returns_the_original(make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction()
    first = services.bid_submit(auction_id=auction.pk, user=alice, amount=20, client_bid_id="k-1")
    again = services.bid_submit(auction_id=auction.pk, user=alice, amount=99, client_bid_id="k-1")
    assert first.created and not again.created
    assert again.bid.pk == first.bid.pk and again.bid.amount == 20
    assert Bid.objects.filter(auction=auction).count() == 1


def test_a_seller_cannot_bid_on_their_own_auction(make_user, make_auction):
    make_user("seller")
    auction = make_auction(seller="seller")
    from core.models import User

    with pytest.raises(Forbidden) as refused:
        services.bid_submit(auction_id=auction.pk, user=User.objects.get(username="seller"), amount=20)
    assert refused.value.code == "seller_cannot_bid"


@pytest.mark.parametrize("amount, max_amount", [(0, None), (-5, None), (1.5, None), (True, None), ("10", None),
                                                 (10**12 + 1, None), (20, 19)])
def test_invalid_amounts_are_refused_with_invalid_amount(make_user, make_auction, amount, max_amount):
    alice = make_user("alice")
    auction = make_auction()
    with pytest.raises(InvalidInput) as refused:
        services.bid_submit(auction_id=auction.pk, user=alice, amount=amount, max_amount=max_amount)
    assert refused.value.code == "invalid_amount"
    assert not Bid.objects.exists()


def test_a_past_start_starts_the_auction_at_once(make_auction):
    auction = make_auction(starts_in=-30, lasts=60)
    assert auction.status == "live"
    assert _types(auction) == ["auction.started"]


def test_nonsense_auctions_are_refused(make_user):
    from core import clock

    now = clock.now()
    for fields in (
        {"ends_at": now - timedelta(seconds=1)},
        {"starting_price": 0},
        {"buy_now_price": 5},
        {"reserve_price": 500, "buy_now_price": 400},
        {"seller": "nobody"},
    ):
        args = {"title": "x", "starts_at": now - timedelta(seconds=5), "ends_at": now + timedelta(minutes=1),
                "starting_price": 10, **fields}
        with pytest.raises(InvalidInput):
            services.auction_create(**args)
    assert not Auction.objects.exists()


def test_deciding_a_batch_never_leaves_a_session_inside_a_pipeline(make_user, make_auction, monkeypatch):
    """A bid worker stopped mid-batch must leave its PostgreSQL session idle in a transaction,
    which WORKER_IDLE_IN_TRANSACTION_S ends, freeing the auction's and the bidders' locks. A
    session stopped inside a psycopg pipeline (what executemany uses) counts as active, so
    nothing ends it: the fault suite's pause-bid-worker hung for as long as the worker was
    stopped (core/sql.py)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("psycopg pipelines exist on PostgreSQL only (CI runs this on PostgreSQL)")
    import psycopg

    pipelines = []
    real = psycopg.Pipeline.__enter__
    monkeypatch.setattr(psycopg.Pipeline, "__enter__", lambda self: pipelines.append(1) or real(self))
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    auction = make_auction(min_increment=1)
    for k, user in enumerate([alice, bob, carol, alice, bob, carol]):  # standings updated, not only created
        services.bid_submit(auction_id=auction.pk, user=user, amount=10 + k)
    services.bid_submit(auction_id=auction.pk, user=bob, amount=11)  # refused: too low
    assert services.bids_decide_pending(auction_id=auction.pk) == 7
    assert pipelines == []
    statuses = list(Bid.objects.filter(auction=auction).order_by("position").values_list("status", "reason"))
    assert statuses == [("accepted", None)] * 6 + [("rejected", "below_minimum")]
    auction.refresh_from_db()
    assert (auction.current_price, auction.leader, auction.bid_count) == (15, carol, 6)
    invariants.assert_decided_once(auction)
    invariants.assert_holds_match_leader(auction)


_runs = iter(range(10**6))


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bids=st.lists(st.tuples(st.integers(0, 7), st.integers(-10, 40), st.integers(0, 60), st.booleans()),
                     min_size=1, max_size=40))
def test_deciding_in_batches_matches_a_replay_over_every_standing(bids):
    """A batch reads the standings of its own bidders and of the two highest maxima only
    (auctions.services._Book); folding the rules over every bid with every standing must give
    the same decisions, the same price and leader, and the same standings."""
    with transaction.atomic():
        run = next(_runs)
        # Ten users first, so that user ids and the auction's id differ (on SQLite each rolled-back
        # example starts again at 1): a query mixing them up must not pass by coincidence.
        users = [User.objects.create_user(f"r{run}u{i}", password="x") for i in range(18)][10:]
        for user in users:  # the replay below assumes every bid affordable
            ledger.grant(username=user.username, amount=10**6)
        now = clock.now()
        auction = services.auction_create(title="lot", starts_at=now - timedelta(seconds=1),
                                          ends_at=now + timedelta(minutes=5), starting_price=10, min_increment=5)
        for user, step, extra, decide_now in bids:
            # Around the price decided so far, so that many bids are accepted and many bidders
            # hold standings (absolute amounts left most examples with two participants).
            auction.refresh_from_db(fields=["current_price"])
            amount = max(1, (auction.current_price or 5) + 5 + step)
            services.bid_submit(auction_id=auction.pk, user=users[user], amount=amount,
                                max_amount=amount + extra if extra else None)
            if decide_now:
                services.bids_decide_pending(auction_id=auction.pk)
        services.bids_decide_pending(auction_id=auction.pk)
        invariants.assert_replay_matches(auction)
        state = rules.State(status=rules.LIVE, ends_at=auction.ends_at)
        terms = selectors.terms_of(auction)
        for bid in Bid.objects.filter(auction=auction).order_by("position"):
            decision = rules.decide_bid(terms, state, rules.BidRequest(
                bid.pk, bid.bidder_id, bid.amount, bid.max_amount, bid.position, bid.received_at), available=10**9)
            if decision.accepted:
                state = decision.state
        stored = {p.user_id: (p.max_amount, p.max_bid_id, p.max_position, p.own_amount, p.shown_amount)
                  for p in Participant.objects.filter(auction=auction)}
        assert stored == {s.user_id: (s.max_amount, s.max_bid_id, s.max_position, s.own_amount, s.shown_amount)
                          for s in state.standings.values()}
        invariants.assert_coins_conserved()
        invariants.assert_holds_match_leader(auction)
        transaction.set_rollback(True)


def test_a_bidder_ranked_third_who_bids_again_keeps_one_standing(make_user, make_auction):
    """A batch reads its bidders' standings and the top two: the third bidder's own standing
    must be among them, or their second bid would be decided as their first (and stored twice)."""
    for k in range(3):  # user ids unlike the auction's: a query mixing the two up must not pass by luck
        make_user(f"nobody{k}")
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    auction = make_auction(min_increment=5)
    assert auction.pk not in {alice.pk, bob.pk, carol.pk}
    for user, amount in ((alice, 10), (bob, 15), (carol, 20), (alice, 40)):
        services.bid_submit(auction_id=auction.pk, user=user, amount=amount)
        assert services.bids_decide_pending(auction_id=auction.pk) == 1
    standings = {p.user.username: (p.max_amount, p.own_amount)
                 for p in Participant.objects.filter(auction=auction).select_related("user")}
    assert standings == {"alice": (40, 40), "bob": (15, 15), "carol": (20, 20)}
    auction.refresh_from_db()
    assert (auction.current_price, auction.leader) == (40, alice)
    invariants.assert_holds_match_leader(auction)
    invariants.assert_coins_conserved()

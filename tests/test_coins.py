"""P4 on the services: whatever happens (bids, decisions, cancels, ends, grants), no coin is
created, lost or spent twice."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auctions import services
from auctions.models import Auction
from core import clock, ledger
from core.errors import ServiceError
from core.models import Account, Hold, Transfer, User
from tests import invariants

_names = itertools.count()

op = st.one_of(
    st.tuples(st.just("bid"), st.integers(0, 3), st.integers(0, 2), st.integers(1, 1400), st.integers(0, 600)),
    st.tuples(st.just("decide"), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 2)),
    st.tuples(st.just("end"), st.integers(0, 2)),
    st.tuples(st.just("grant"), st.integers(0, 3), st.integers(1, 500)),
)


@pytest.mark.django_db
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=30))
def test_coins_are_conserved_whatever_the_sequence_of_bids_cancels_and_ends(ops):
    # Each example rolls back, so every example starts from the same books.
    with transaction.atomic():
        _play(ops)
        transaction.set_rollback(True)


def _play(ops) -> None:
    run = next(_names)
    users = [User.objects.create_user(f"p{run}u{i}", password="x") for i in range(4)]
    seller = User.objects.create_user(f"p{run}seller", password="x")
    now = clock.now()
    auctions = [
        services.auction_create(title=f"lot {i}", starts_at=now - timedelta(seconds=1),
                                ends_at=now + timedelta(minutes=5), starting_price=10, min_increment=5,
                                reserve_price=(300 if i == 1 else None), buy_now_price=(900 if i == 2 else None),
                                seller=(seller.username if i != 0 else None))
        for i in range(3)
    ]
    for step in ops:
        kind, index = step[0], step[1]
        try:
            if kind == "bid":
                _, u, a, amount, extra = step
                services.bid_submit(auction_id=auctions[a].pk, user=users[u], amount=amount,
                                    max_amount=(amount + extra) if extra else None)
            elif kind == "decide":
                services.bids_decide_pending(auction_id=auctions[index].pk)
            elif kind == "cancel":
                services.auction_cancel(auction_id=auctions[index].pk)
            elif kind == "end":
                auction = Auction.objects.get(pk=auctions[index].pk)
                services.auction_end(auction_id=auction.pk, now=auction.ends_at + timedelta(seconds=1))
            elif kind == "grant":
                ledger.grant(username=users[index].username, amount=step[2])
        except ServiceError:
            pass  # refused at the edge: must have stored nothing, which the invariants check
        invariants.assert_coins_conserved()
        for auction in auctions:
            invariants.assert_holds_match_leader(auction)
    for auction in auctions:
        services.bids_decide_pending(auction_id=auction.pk)
        auction.refresh_from_db()
        if auction.status == "ended" and auction.winner_id:
            paid = Transfer.objects.get(auction_id=auction.pk, kind="settlement")
            assert paid.amount == auction.final_price
            assert paid.debit.user_id == auction.winner_id
        invariants.assert_decided_once(auction)
    invariants.assert_coins_conserved()


def test_a_transfer_outside_a_transaction_is_refused(transactional_db):
    mint = ledger.system_account(Account.Kind.MINT)
    house = ledger.system_account(Account.Kind.HOUSE)
    with pytest.raises(RuntimeError):
        ledger.ledger_transfer(debit_id=mint.pk, credit_id=house.pk, amount=1, kind="grant")


def test_a_transfer_cannot_overdraw_or_spend_held_coins(make_user):
    alice = make_user("alice")
    account = alice.account
    with transaction.atomic():
        ledger.hold_set(account_id=account.pk, auction_id=1, amount=700)
    house = ledger.system_account(Account.Kind.HOUSE)
    with pytest.raises(ledger.InsufficientFunds), transaction.atomic():
        ledger.ledger_transfer(debit_id=account.pk, credit_id=house.pk, amount=301, kind="grant")
    with transaction.atomic():
        ledger.ledger_transfer(debit_id=account.pk, credit_id=house.pk, amount=300, kind="grant")
    account.refresh_from_db()
    assert (account.balance, account.held, account.available) == (700, 700, 0)
    invariants.assert_coins_conserved()


def test_transfers_are_append_only(make_user):
    alice = make_user("alice")
    transfer = Transfer.objects.get(credit=alice.account, kind="signup_bonus")
    with pytest.raises(ValueError):
        transfer.save()
    with pytest.raises(ValueError):
        transfer.delete()


def test_new_users_get_the_signup_bonus_from_the_mint(make_user):
    alice = make_user("alice")
    assert alice.account.balance == 1000
    assert ledger.system_account(Account.Kind.MINT).balance == -1000
    assert ledger.ledger_sum() == 0


def test_holds_across_auctions_never_commit_more_than_the_balance(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    first, second = make_auction(starting_price=10), make_auction(starting_price=10)
    services.bid_submit(auction_id=first.pk, user=alice, amount=700)
    services.bid_submit(auction_id=second.pk, user=alice, amount=400)
    services.bids_decide_pending(auction_id=first.pk)
    services.bids_decide_pending(auction_id=second.pk)
    second_bid = alice.bids.get(auction=second)
    assert second_bid.status == "rejected" and second_bid.reason == "insufficient_funds"
    # Outbid on the first auction, alice's hold is released and she can bid elsewhere again.
    services.bid_submit(auction_id=first.pk, user=bob, amount=800)
    services.bids_decide_pending(auction_id=first.pk)
    assert Hold.objects.filter(account=alice.account, active=True).count() == 0
    services.bid_submit(auction_id=second.pk, user=alice, amount=900)
    services.bids_decide_pending(auction_id=second.pk)
    alice.account.refresh_from_db()
    assert alice.account.held == 900
    invariants.assert_coins_conserved()


def _holds(auction_id: int) -> dict[str, int]:
    return {h.account.user.username: h.amount for h in Hold.objects.filter(auction_id=auction_id, active=True)}


def test_moving_a_hold_releases_the_old_holders_and_sets_the_new_holders(make_user):
    alice, bob = make_user("alice"), make_user("bob")

    def move(from_user, to_user, amount: int) -> None:
        with transaction.atomic():
            locked = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk, bob.pk})
            locked.move_hold(from_user_id=from_user.pk if from_user else None, to_user_id=to_user.pk, amount=amount)
            locked.write()

    move(None, alice, 300)
    assert _holds(7) == {"alice": 300}
    move(alice, alice, 450)
    assert _holds(7) == {"alice": 450}
    move(alice, bob, 500)
    assert _holds(7) == {"bob": 500}
    move(bob, bob, 200)  # lowering a hold frees the difference
    alice.account.refresh_from_db()
    bob.account.refresh_from_db()
    assert (alice.account.held, bob.account.held, bob.account.available) == (0, 200, 800)
    invariants.assert_coins_conserved()


def test_several_moves_in_one_transaction_build_on_each_other(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    with transaction.atomic():
        locked = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk, bob.pk})
        locked.move_hold(from_user_id=None, to_user_id=alice.pk, amount=300)
        locked.move_hold(from_user_id=alice.pk, to_user_id=bob.pk, amount=400)
        assert locked.available_here(alice.pk) == 1000 and locked.available_here(bob.pk) == 1000
        locked.move_hold(from_user_id=bob.pk, to_user_id=alice.pk, amount=900)
        assert locked.release_hold(alice.pk) == 900
        locked.write()
    assert _holds(7) == {}
    invariants.assert_coins_conserved()


def test_a_hold_move_the_new_holder_cannot_cover_changes_nothing(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    with transaction.atomic():
        ledger.hold_set(account_id=bob.account.pk, auction_id=8, amount=900)  # bob's coins held elsewhere
        first = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk})
        first.move_hold(from_user_id=None, to_user_id=alice.pk, amount=300)
        first.write()
    with pytest.raises(ledger.InsufficientFunds), transaction.atomic():
        locked = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk, bob.pk})
        assert locked.available_here(bob.pk) == 100
        locked.move_hold(from_user_id=alice.pk, to_user_id=bob.pk, amount=101)
    assert _holds(7) == {"alice": 300}
    invariants.assert_coins_conserved()


def test_locked_accounts_refuse_to_write_once_other_ledger_calls_changed_them(make_user):
    alice = make_user("alice")
    with transaction.atomic():
        locked = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk})
        locked.forget()
        with pytest.raises(RuntimeError):
            locked.move_hold(from_user_id=None, to_user_id=alice.pk, amount=10)
        with pytest.raises(ledger.LedgerError):
            ledger.LockedAccounts(auction_id=7, user_ids=set()).release_hold(alice.pk)


def _hold(user, auction_id: int, amount: int) -> None:
    with transaction.atomic():
        locked = ledger.LockedAccounts(auction_id=auction_id, user_ids={user.pk})
        locked.move_hold(from_user_id=None, to_user_id=user.pk, amount=amount)
        locked.write()


def test_a_capture_pays_the_price_from_the_winners_hold_and_records_the_settlement(make_user):
    alice, seller = make_user("alice"), make_user("seller")
    _hold(alice, 7, 300)
    _hold(alice, 8, 100)  # held on another auction: stays held
    with transaction.atomic():
        locked = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk, seller.pk})
        locked.capture(user_id=alice.pk, amount=250, credit_account_id=locked.account(seller.pk), memo="lot 7")
        locked.release_all()
        locked.write()
    alice.account.refresh_from_db()
    seller.account.refresh_from_db()
    assert (alice.account.balance, alice.account.held, seller.account.balance) == (750, 100, 1250)
    assert _holds(7) == {} and _holds(8) == {"alice": 100}
    settlement = Transfer.objects.get(auction_id=7, kind="settlement")
    assert (settlement.debit_id, settlement.credit_id, settlement.amount, settlement.memo) == (
        alice.account.pk, seller.account.pk, 250, "lot 7")
    assert (settlement.debit_balance_after, settlement.credit_balance_after) == (750, 1250)
    invariants.assert_coins_conserved()


def test_a_capture_can_pay_the_house_whose_account_is_no_users(make_user):
    alice = make_user("alice")
    _hold(alice, 7, 300)
    house = ledger.system_account(Account.Kind.HOUSE)
    with transaction.atomic():
        locked = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk})
        locked.capture(user_id=alice.pk, amount=300, credit_account_id=house.pk)
        locked.write()
    house.refresh_from_db()
    alice.account.refresh_from_db()
    assert (alice.account.balance, alice.account.held, house.balance) == (700, 0, 300)
    invariants.assert_coins_conserved()


def test_a_capture_beyond_the_winners_coins_is_refused_and_changes_nothing(make_user):
    alice, seller = make_user("alice"), make_user("seller")
    _hold(alice, 7, 300)
    _hold(alice, 8, 700)  # the rest of alice's coins, held elsewhere
    with pytest.raises(ledger.InsufficientFunds), transaction.atomic():
        locked = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk, seller.pk})
        locked.capture(user_id=alice.pk, amount=301, credit_account_id=locked.account(seller.pk))
    assert _holds(7) == {"alice": 300} and not Transfer.objects.filter(kind="settlement").exists()
    invariants.assert_coins_conserved()


def test_a_capture_read_before_other_ledger_calls_is_not_written(make_user):
    """A write from a stale read would put back the balances and held totals it read."""
    alice, seller = make_user("alice"), make_user("seller")
    _hold(alice, 7, 300)
    with transaction.atomic():
        locked = ledger.LockedAccounts(auction_id=7, user_ids={alice.pk, seller.pk})
        locked.capture(user_id=alice.pk, amount=300, credit_account_id=locked.account(seller.pk))
        locked.forget()
        with pytest.raises(RuntimeError):
            locked.write()

"""Coin services: the only code that changes a balance or a hold.

Contract for every function here: it must run inside `transaction.atomic()` (it asserts so), and it
locks the account rows it changes (`select_for_update`, in ascending id order when there are two) so
that concurrent decisions on different auctions cannot spend the same coin twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from core import clock
from core.models import Account, Hold, Transfer, User


class LedgerError(Exception):
    code = "ledger_error"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


def _require_atomic() -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("ledger operations must run inside transaction.atomic()")


def system_account(kind: str) -> Account:
    account, _ = Account.objects.get_or_create(kind=kind, user=None)
    return account


def _lock(account_id: int) -> Account:
    return Account.objects.select_for_update().get(pk=account_id)


def account_open(*, user: User) -> Account:
    """Open a user's account and credit the signup bonus from the mint. Idempotent per user."""
    with transaction.atomic():
        account, created = Account.objects.get_or_create(user=user, defaults={"kind": Account.Kind.USER})
        if created and settings.SIGNUP_BONUS > 0:
            ledger_transfer(
                debit_id=system_account(Account.Kind.MINT).pk,
                credit_id=account.pk,
                amount=settings.SIGNUP_BONUS,
                kind=Transfer.Kind.SIGNUP_BONUS,
                memo="signup bonus",
            )
            account.refresh_from_db()
        return account


def ledger_transfer(
    *,
    debit_id: int,
    credit_id: int,
    amount: int,
    kind: str,
    auction_id: int | None = None,
    memo: str = "",
    created_by: User | None = None,
) -> Transfer:
    """Move `amount` coins from one account to another and record it. The debit side must have
    `amount` available (held coins are not spendable), except the mint, which issues coins."""
    _require_atomic()
    if amount <= 0:
        raise LedgerError("transfer amount must be positive")
    if debit_id == credit_id:
        raise LedgerError("a transfer needs two different accounts")
    first, second = sorted((debit_id, credit_id))
    locked = {first: _lock(first), second: _lock(second)}
    debit, credit = locked[debit_id], locked[credit_id]
    if debit.kind != Account.Kind.MINT and debit.available < amount:
        raise InsufficientFunds(f"account {debit} has {debit.available} available, needs {amount}")
    debit.balance -= amount
    credit.balance += amount
    Account.objects.filter(pk=debit.pk).update(balance=debit.balance)
    Account.objects.filter(pk=credit.pk).update(balance=credit.balance)
    return Transfer.objects.create(
        kind=kind,
        debit=debit,
        credit=credit,
        amount=amount,
        debit_balance_after=debit.balance,
        credit_balance_after=credit.balance,
        auction_id=auction_id,
        memo=memo[:200],
        created_by=created_by,
    )


def grant(*, username: str, amount: int, memo: str = "", by: User | None = None) -> Transfer:
    """Staff grant: new coins from the mint to a user."""
    with transaction.atomic():
        account = Account.objects.get(user__username=username)
        return ledger_transfer(
            debit_id=system_account(Account.Kind.MINT).pk,
            credit_id=account.pk,
            amount=amount,
            kind=Transfer.Kind.GRANT,
            memo=memo or "grant",
            created_by=by,
        )


def active_hold(*, account_id: int, auction_id: int) -> Hold | None:
    return Hold.objects.filter(account_id=account_id, auction_id=auction_id, active=True).first()


def hold_set(*, account_id: int, auction_id: int, amount: int) -> Hold:
    """Make the account's active hold on the auction exactly `amount` (placing, raising or
    lowering it). Raises InsufficientFunds if the account cannot cover the difference."""
    _require_atomic()
    account = _lock(account_id)
    hold = active_hold(account_id=account_id, auction_id=auction_id)
    current = hold.amount if hold else 0
    delta = amount - current
    if delta > account.available:
        raise InsufficientFunds(f"account {account} has {account.available} available, needs {delta}")
    if hold is None:
        hold = Hold.objects.create(account_id=account_id, auction_id=auction_id, amount=amount)
    elif delta:
        hold.amount = amount
        hold.save(update_fields=["amount"])
    if delta:
        Account.objects.filter(pk=account_id).update(held=account.held + delta)
    return hold


def hold_release(*, account_id: int, auction_id: int) -> int:
    """Release the account's active hold on the auction, if any. Returns the amount released."""
    _require_atomic()
    account = _lock(account_id)
    hold = active_hold(account_id=account_id, auction_id=auction_id)
    if hold is None:
        return 0
    Hold.objects.filter(pk=hold.pk).update(active=False, released_at=clock.now())
    Account.objects.filter(pk=account_id).update(held=account.held - hold.amount)
    return hold.amount


class LockedAccounts:
    """Users' accounts locked for the rest of the transaction (ascending id, one query), with
    their balances, held totals and active holds on one auction (one more query): what deciding
    a batch of bids reads once. `move_hold` and `release_hold` then only write, and keep what
    was read up to date, so they may be called again in the same transaction.

    Written for the decider, which moves an auction's hold once per batch: hold_release then
    hold_set were eight statements, half of deciding a batch."""

    def __init__(self, *, auction_id: int, user_ids: Iterable[int]) -> None:
        _require_atomic()
        self.auction_id = auction_id
        rows = list(Account.objects.select_for_update().filter(user_id__in=set(user_ids)).order_by("pk")
                    .values_list("user_id", "pk", "balance", "held"))
        self.account_of = {user_id: pk for user_id, pk, _, _ in rows}
        self.balance = {pk: balance for _, pk, balance, _ in rows}
        self.held = {pk: held for _, pk, _, held in rows}
        self.holds = {account_id: (pk, amount) for pk, account_id, amount in
                      Hold.objects.filter(auction_id=auction_id, active=True, account_id__in=self.balance)
                      .values_list("pk", "account_id", "amount")}
        self.stale = False

    def available_here(self, user_id: int) -> int:
        """What the user can commit to this auction: available plus their own hold here."""
        pk = self._account(user_id)
        return self.balance[pk] - self.held[pk] + self.holds.get(pk, (None, 0))[1]

    def move_hold(self, *, from_user_id: int | None, to_user_id: int, amount: int) -> None:
        """The auction's hold passes to `to_user_id` at exactly `amount` (placed, raised or
        lowered), and `from_user_id`'s (the holder before) is released. Raises InsufficientFunds,
        changing nothing, if the new holder cannot cover the difference."""
        to = self._account(to_user_id)
        current = self.holds.get(to)
        delta = amount - (current[1] if current else 0)
        available = self.balance[to] - self.held[to]
        if delta > available:
            raise InsufficientFunds(f"account {to} has {available} available, needs {delta}")
        if from_user_id is not None and from_user_id != to_user_id:
            self.release_hold(from_user_id)
        if current is None:
            self.holds[to] = (Hold.objects.create(account_id=to, auction_id=self.auction_id, amount=amount).pk, amount)
        elif delta:
            Hold.objects.filter(pk=current[0]).update(amount=amount)
            self.holds[to] = (current[0], amount)
        if delta:
            self.held[to] += delta
            Account.objects.filter(pk=to).update(held=self.held[to])

    def release_hold(self, user_id: int) -> int:
        """Release the user's active hold on the auction, if any. Returns the amount released."""
        pk = self._account(user_id)
        hold = self.holds.pop(pk, None)
        if hold is None:
            return 0
        Hold.objects.filter(pk=hold[0]).update(active=False, released_at=clock.now())
        self.held[pk] -= hold[1]
        Account.objects.filter(pk=pk).update(held=self.held[pk])
        return hold[1]

    def forget(self) -> None:
        """Other ledger calls changed these accounts (a settlement): what was read is stale now."""
        self.stale = True

    def _account(self, user_id: int) -> int:
        if self.stale:
            raise RuntimeError("these accounts changed since they were read; read them again")
        try:
            return self.account_of[user_id]
        except KeyError:
            raise LedgerError(f"user {user_id}'s account was not locked") from None


def hold_capture(
    *, account_id: int, auction_id: int, amount: int, credit_id: int, memo: str = ""
) -> Transfer:
    """Settle a won auction: release the winner's hold and move exactly `amount` to the seller."""
    _require_atomic()
    hold_release(account_id=account_id, auction_id=auction_id)
    return ledger_transfer(
        debit_id=account_id,
        credit_id=credit_id,
        amount=amount,
        kind=Transfer.Kind.SETTLEMENT,
        auction_id=auction_id,
        memo=memo,
    )


def available_for_auction(*, account_id: int, auction_id: int) -> int:
    """What the account can commit to this auction: available plus its own hold here.
    Locks the account row, so the answer stays true until the transaction ends."""
    _require_atomic()
    account = _lock(account_id)
    hold = active_hold(account_id=account_id, auction_id=auction_id)
    return account.available + (hold.amount if hold else 0)


def ledger_sum() -> int:
    """Sum of all balances; zero whenever the books are consistent (the mint is negative)."""
    return Account.objects.aggregate(total=Sum("balance"))["total"] or 0


@dataclass(frozen=True)
class AccountAudit:
    """One account as its rows say and as its transfers and holds add up (P4 checks these)."""

    pk: int
    kind: str
    balance: int
    held: int
    active_holds: int
    credited: int
    debited: int


def accounts_audit() -> list[AccountAudit]:
    """Every account's balance and held next to the sums of its transfers and active holds, in
    one query: for the tests' invariants and the benchmarks' after-run checks."""
    zero = Value(0, output_field=BigIntegerField())
    holds = Hold.objects.filter(account=OuterRef("pk"), active=True).values("account").annotate(s=Sum("amount"))
    credits = Transfer.objects.filter(credit=OuterRef("pk")).values("credit").annotate(s=Sum("amount"))
    debits = Transfer.objects.filter(debit=OuterRef("pk")).values("debit").annotate(s=Sum("amount"))
    rows = Account.objects.annotate(
        active_holds=Coalesce(Subquery(holds.values("s")[:1]), zero),
        credited=Coalesce(Subquery(credits.values("s")[:1]), zero),
        debited=Coalesce(Subquery(debits.values("s")[:1]), zero),
    ).values_list("pk", "kind", "balance", "held", "active_holds", "credited", "debited")
    return [AccountAudit(*row) for row in rows]


@dataclass(frozen=True)
class StatementLine:
    """One transfer seen from one account: `amount` < 0 when coins left it."""

    transfer: Transfer
    amount: int
    balance_after: int

    @property
    def outgoing(self) -> bool:
        return self.amount < 0


def account_statement(*, account: Account, limit: int = 200) -> list[StatementLine]:
    """The account's transfers, newest first, signed from its side (a read; no lock)."""
    transfers = Transfer.objects.filter(Q(debit=account) | Q(credit=account)).order_by("-id")[:limit]
    lines = []
    for t in transfers:
        outgoing = t.debit_id == account.pk
        lines.append(StatementLine(t, -t.amount if outgoing else t.amount,
                                   t.debit_balance_after if outgoing else t.credit_balance_after))
    return lines

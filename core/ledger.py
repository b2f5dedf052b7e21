"""Coin services: the only code that changes a balance or a hold.

Contract for every function here: it must run inside `transaction.atomic()` (it asserts so), and it
locks the account rows it changes (`select_for_update`, in ascending id order when there are two) so
that concurrent decisions on different auctions cannot spend the same coin twice.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from core import clock, sql
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
    """Users' accounts locked for the rest of the transaction (ascending id), read with their
    active holds on one auction and their usernames, in one statement: what deciding a batch of
    bids reads once. `move_hold` and `release_hold` change only what was read; `write` stores
    the result, each changed row once (a hold placed, raised or lowered; a hold released; an
    account's held total), as statements queued on the caller's core.sql.Writes or run at once.

    Written for the decider, which moves an auction's hold once per batch: hold_release then
    hold_set were eight statements, half of deciding a batch. An end settles through it too
    (`capture`, `release_all`): hold_capture and a hold_release per hold were ten statements
    compiled by the ORM, most of an end's cost when many auctions end in one second."""

    def __init__(self, *, auction_id: int, user_ids: Iterable[int], rows: list[tuple] | None = None) -> None:
        """`rows`: the accounts' rows as `locked_accounts_sql` selects them, when the caller's own
        statement read them and locked them as it does (FOR UPDATE, ascending id)."""
        _require_atomic()
        self.auction_id = auction_id
        if rows is None:
            rows = []
            users = sorted(set(user_ids))
            if users:
                with sql.cursor() as cursor:
                    cursor.execute(_locked_accounts_sql(len(users), connection.vendor), [auction_id, *users])
                    rows = cursor.fetchall()
        self.account_of = {user_id: pk for user_id, pk, *_ in rows}
        self.names = {user_id: name for user_id, _, _, _, _, name in rows}
        self.balance = {pk: balance for _, pk, balance, *_ in rows}
        self.held = {pk: held for _, pk, _, held, _, _ in rows}
        self.holds = {pk: amount for _, pk, _, _, amount, _ in rows if amount is not None}
        self._written_held = dict(self.held)
        self._written_holds = dict(self.holds)
        self._written_balance = dict(self.balance)
        self._transfers: list[tuple] = []
        self.stale = False

    def account(self, user_id: int) -> int:
        """The id of the user's locked account (LedgerError if it was not locked here)."""
        return self._account(user_id)

    def available_here(self, user_id: int) -> int:
        """What the user can commit to this auction: available plus their own hold here."""
        pk = self._account(user_id)
        return self.balance[pk] - self.held[pk] + self.holds.get(pk, 0)

    def move_hold(self, *, from_user_id: int | None, to_user_id: int, amount: int) -> None:
        """The auction's hold passes to `to_user_id` at exactly `amount` (placed, raised or
        lowered), and `from_user_id`'s (the holder before) is released. Raises InsufficientFunds,
        changing nothing, if the new holder cannot cover the difference."""
        to = self._account(to_user_id)
        delta = amount - self.holds.get(to, 0)
        available = self.balance[to] - self.held[to]
        if delta > available:
            raise InsufficientFunds(f"account {to} has {available} available, needs {delta}")
        if from_user_id is not None and from_user_id != to_user_id:
            self.release_hold(from_user_id)
        self.holds[to] = amount
        self.held[to] += delta

    def release_hold(self, user_id: int) -> int:
        """Release the user's active hold on the auction, if any. Returns the amount released."""
        pk = self._account(user_id)
        amount = self.holds.pop(pk, 0)
        self.held[pk] -= amount
        return amount

    def release_all(self) -> None:
        """Release every hold on the auction that was read (a settlement: the caller locked
        every participant, so that is every hold on it)."""
        for pk in list(self.holds):
            self.held[pk] -= self.holds.pop(pk)

    def capture(self, *, user_id: int, amount: int, credit_account_id: int, memo: str = "") -> None:
        """Settle a won auction: release the user's hold here and move exactly `amount` of their
        coins to `credit_account_id` (the seller's account locked here, or the house's, locked
        now), recorded on write as the auction's settlement transfer. Raises, changing nothing,
        if the coins are not there."""
        if amount <= 0:
            raise LedgerError("transfer amount must be positive")
        debit = self._account(user_id)
        if credit_account_id == debit:
            raise LedgerError("a transfer needs two different accounts")
        available = self.balance[debit] - self.held[debit] + self.holds.get(debit, 0)
        if available < amount:
            raise InsufficientFunds(f"account {debit} has {available} available, needs {amount}")
        if credit_account_id not in self.balance:  # not a user's: locked after them, as before
            credit = _lock(credit_account_id)
            self.balance[credit.pk] = self._written_balance[credit.pk] = credit.balance
            self.held[credit.pk] = self._written_held[credit.pk] = credit.held
        self.release_hold(user_id)
        self.balance[debit] -= amount
        self.balance[credit_account_id] += amount
        self._transfers.append((Transfer.Kind.SETTLEMENT, debit, credit_account_id, amount, self.balance[debit],
                                self.balance[credit_account_id], self.auction_id, memo[:200]))

    def write(self, writes: sql.Writes | None = None) -> None:
        """Store what changed since the read (or the last write): queued on `writes`, which the
        caller flushes in this transaction, or at once. A hold released and placed again on the
        same account in between is one row whose amount changed."""
        now = self._writes(writes or sql.Writes())
        if writes is None:
            now.flush()

    def _writes(self, writes: sql.Writes) -> sql.Writes:
        before, after = self._written_holds, self.holds
        released = [pk for pk in before if pk not in after]
        placed = [pk for pk in after if pk not in before]
        changed = [pk for pk in after if pk in before and after[pk] != before[pk]]
        if self.stale and (before != after or self._transfers or self.balance != self._written_balance
                           or self.held != self._written_held):
            raise RuntimeError("these accounts changed since they were read; writing would undo that")
        # One row per account, balance and held together: no two of a flush's statements may
        # touch one row (core.sql.Writes).
        accounts = [pk for pk in self.held
                    if self.held[pk] != self._written_held[pk] or self.balance[pk] != self._written_balance[pk]]
        now = connection.ops.adapt_datetimefield_value(clock.now())
        if released:
            writes.add(*sql.update(Hold, ("active", "released_at"), ("account",), [(False, now, pk) for pk in released],
                                   _ACTIVE_HERE, (self.auction_id, True)))
        if changed:
            writes.add(*sql.update(Hold, ("amount",), ("account",), [(after[pk], pk) for pk in changed],
                                   _ACTIVE_HERE, (self.auction_id, True)))
        if placed:
            writes.add(*sql.insert(Hold, ("account", "auction_id", "amount", "active", "created_at"),
                                   [(pk, self.auction_id, after[pk], True, now) for pk in placed]))
        if accounts:
            writes.add(*sql.update(Account, ("balance", "held"), ("pk",),
                                   [(self.balance[pk], self.held[pk], pk) for pk in accounts]))
        if self._transfers:
            writes.add(*sql.insert(Transfer, ("kind", "debit", "credit", "amount", "debit_balance_after",
                                              "credit_balance_after", "auction_id", "memo", "created_at"),
                                   [(*transfer, now) for transfer in self._transfers]))
        self._written_holds, self._written_held = dict(self.holds), dict(self.held)
        self._written_balance, self._transfers = dict(self.balance), []
        return writes

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


_ACTIVE_HERE = f'"{Hold._meta.db_table}"."auction_id" = %s AND "{Hold._meta.db_table}"."active" = %s'


@functools.lru_cache(maxsize=256)
def _locked_accounts_sql(users: int, vendor: str) -> str:
    return locked_accounts_sql(sql.in_list(users), vendor)


def locked_accounts_sql(users: str, vendor: str) -> str:
    """The statement LockedAccounts reads with (params: the auction id, then those `users`
    takes): the accounts of `users` (an SQL list or subquery of user ids), locked in ascending
    id, each with its active hold on the auction and its user's name."""
    accounts, holds, people = Account._meta.db_table, Hold._meta.db_table, User._meta.db_table
    lock = " FOR UPDATE OF a" if vendor == "postgresql" else ""  # SQLite serialises writers anyway
    return (f"SELECT a.user_id, a.id, a.balance, a.held, h.amount, u.username FROM {accounts} AS a "
            f"JOIN {people} AS u ON u.id = a.user_id "
            f"LEFT JOIN {holds} AS h ON h.account_id = a.id AND h.auction_id = %s AND h.active "
            f"WHERE a.user_id IN {users} ORDER BY a.id{lock}")


LOCKED_ACCOUNT_FIELDS = ((Account, "user"), (Account, "id"), (Account, "balance"), (Account, "held"),
                         (Hold, "amount"), (User, "username"))  # the model fields of its columns, in order


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

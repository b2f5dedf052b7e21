"""Users and the coin ledger.

Balances live on Account rows but are derivable from Transfer rows: every change to a balance is a
Transfer written in the same transaction (see core.ledger). Holds reserve coins without moving them;
Account.held is the sum of the account's active holds, kept in the same transaction as the hold.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import F, Q


class User(AbstractUser):
    pass


class Account(models.Model):
    class Kind(models.TextChoices):
        USER = "user", "User"
        MINT = "mint", "Mint"  # source of every coin; its balance is minus the coins in circulation
        HOUSE = "house", "House"  # the seller when an auction has none

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.USER)
    user = models.OneToOneField(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="account"
    )
    balance = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_non_negative"),
            models.CheckConstraint(
                condition=Q(kind="mint") | Q(balance__gte=F("held")),
                name="account_available_non_negative",
            ),
            models.UniqueConstraint(
                fields=["kind"], condition=~Q(kind="user"), name="one_system_account_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return self.user.username if self.user_id else f"<{self.kind}>"

    @property
    def available(self) -> int:
        return self.balance - self.held


class Transfer(models.Model):
    """One append-only ledger entry: `amount` leaves `debit` and arrives at `credit`."""

    class Kind(models.TextChoices):
        SIGNUP_BONUS = "signup_bonus", "Signup bonus"
        GRANT = "grant", "Grant"
        SETTLEMENT = "settlement", "Auction settlement"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    debit = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="debits")
    credit = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credits")
    amount = models.BigIntegerField()
    debit_balance_after = models.BigIntegerField()
    credit_balance_after = models.BigIntegerField()
    auction_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    memo = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(condition=~Q(debit=F("credit")), name="transfer_distinct_accounts"),
            # A winner pays once: at most one settlement per auction.
            models.UniqueConstraint(
                fields=["auction_id"], condition=Q(kind="settlement"), name="one_settlement_per_auction"
            ),
        ]
        indexes = [models.Index(fields=["debit", "-id"]), models.Index(fields=["credit", "-id"])]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("ledger transfers are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("ledger transfers are append-only")

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.amount} {self.debit} -> {self.credit}"


class Hold(models.Model):
    """Coins reserved for a leading bid. At most one active hold per account and auction."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    auction_id = models.BigIntegerField(db_index=True)
    amount = models.BigIntegerField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.UniqueConstraint(
                fields=["account", "auction_id"], condition=Q(active=True), name="one_active_hold"
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.amount} on auction {self.auction_id} ({'active' if self.active else 'released'})"

"""The auction domain's tables.

Order and once-ness live here, not in the broker: `Intake.last_position` hands out bid positions
(the row lock on Intake is the fence between receiving bids and ending the auction), and
`Auction.seq` with the unique (auction, seq) on AuctionEvent makes the event stream gap-free.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Auction(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        LIVE = "live"
        ENDED = "ended"
        CANCELLED = "cancelled"

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    seller = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="auctions_selling"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED, db_index=True)
    starts_at = models.DateTimeField(db_index=True)
    ends_at = models.DateTimeField(db_index=True)
    hard_close_at = models.DateTimeField()
    starting_price = models.BigIntegerField()
    min_increment = models.BigIntegerField(default=1)
    reserve_price = models.BigIntegerField(null=True, blank=True)
    buy_now_price = models.BigIntegerField(null=True, blank=True)
    extend_window_s = models.PositiveIntegerField(default=30)
    extend_by_s = models.PositiveIntegerField(default=30)

    current_price = models.BigIntegerField(null=True, blank=True)
    leader = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    bid_count = models.PositiveIntegerField(default=0)
    seq = models.PositiveBigIntegerField(default=0)  # seq of the last event
    # Bumped whenever ends_at moves: an end timer armed for an older version does nothing.
    end_version = models.PositiveIntegerField(default=0)
    armed_start = models.BooleanField(default=False)
    armed_end_version = models.IntegerField(default=-1)
    winner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="auctions_won"
    )
    final_price = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="auction_ends_after_start"),
            models.CheckConstraint(condition=Q(starting_price__gt=0), name="auction_starting_price_positive"),
            models.CheckConstraint(condition=Q(min_increment__gt=0), name="auction_increment_positive"),
        ]
        indexes = [models.Index(fields=["status", "ends_at"]), models.Index(fields=["status", "starts_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_final(self) -> bool:
        return self.status in (self.Status.ENDED, self.Status.CANCELLED)


class Intake(models.Model):
    """Hands out bid positions (auctions.intake). Locked by every bid submission and by
    end/cancel, never by the bid decider, so receiving bids does not wait for deciding them."""

    auction = models.OneToOneField(Auction, primary_key=True, on_delete=models.CASCADE, related_name="intake")
    last_position = models.PositiveBigIntegerField(default=0)
    # Set by the end or cancel that makes the auction final; auctions.intake explains why.
    closed = models.BooleanField(default=False)


class Bid(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    auction = models.ForeignKey(Auction, on_delete=models.PROTECT, related_name="bids")
    bidder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bids")
    amount = models.BigIntegerField()
    max_amount = models.BigIntegerField(null=True, blank=True)
    position = models.PositiveBigIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=32, null=True, blank=True)
    seq = models.PositiveBigIntegerField(null=True, blank=True)
    client_bid_id = models.CharField(max_length=64, null=True, blank=True)
    channel = models.CharField(max_length=8, default="rest")  # rest | ws
    received_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["auction", "position"], name="bid_position_unique"),
            models.UniqueConstraint(
                fields=["auction", "bidder", "client_bid_id"],
                condition=Q(client_bid_id__isnull=False),
                name="bid_client_id_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["auction", "status", "position"]),
            models.Index(fields=["status", "received_at"]),
            models.Index(fields=["bidder", "-id"]),
        ]

    def __str__(self) -> str:
        return f"bid #{self.pk} {self.amount} on {self.auction_id} ({self.status})"


class Participant(models.Model):
    """A bidder's standing in one auction (rules.Standing): their max and what the stream showed."""

    auction = models.ForeignKey(Auction, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    max_amount = models.BigIntegerField()
    max_bid = models.ForeignKey(Bid, on_delete=models.PROTECT, related_name="+")
    max_position = models.PositiveBigIntegerField()
    own_amount = models.BigIntegerField(default=0)
    shown_amount = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["auction", "user"], name="participant_unique")]


class AuctionEvent(models.Model):
    """The auction's persisted event stream: seq 1, 2, 3... with no gap (unique per auction)."""

    auction = models.ForeignKey(Auction, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    at = models.DateTimeField()

    class Meta:
        ordering = ["auction_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["auction", "seq"], name="event_seq_unique")]

    def __str__(self) -> str:
        return f"{self.auction_id}#{self.seq} {self.type}"

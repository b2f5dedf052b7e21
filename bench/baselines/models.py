"""What a baseline records beside the product's tables: the order in which it decided bids."""

from django.db import models


class Decision(models.Model):
    """One decided bid. Rows are inserted under the auction's row lock, in the transaction that
    decides the bid, so per auction the ids follow the decision order (decided_at could tie or
    step back with the clock; an id cannot)."""

    auction_id = models.BigIntegerField(db_index=True)
    bid_id = models.BigIntegerField(unique=True)
    position = models.PositiveBigIntegerField()

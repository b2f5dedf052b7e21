"""How far from position order a run decided its bids (the contract: decisions happen in position
order). Read after a run by bench/django_side.py hot-check."""

from __future__ import annotations

from collections.abc import Iterable


def ordering_violations(positions_in_decision_order: Iterable[int]) -> int:
    """Bids decided after a bid with a higher position (of the same auction): 0 when the bids
    were decided in position order."""
    violations = 0
    highest = 0
    for position in positions_in_decision_order:
        if position < highest:
            violations += 1
        else:
            highest = position
    return violations


def decision_order(auction_id: int) -> tuple[list[int], str]:
    """The auction's decided bids' positions in decision order, and what that order is read from.

    A baseline records it (bench.baselines.models.Decision). Gavel decides a batch of pending
    bids in one transaction with one decided_at, in position order, and each batch after the one
    before it (under the auction's row lock), so decided_at then position is its decision order."""
    from django.apps import apps

    from auctions.models import Bid

    if apps.is_installed("bench.baselines"):
        from bench.baselines.models import Decision

        rows = Decision.objects.filter(auction_id=auction_id).order_by("id").values_list("position", flat=True)
        return list(rows), "recorded decision order (bench_baselines_decision.id)"
    rows = (Bid.objects.filter(auction_id=auction_id, decided_at__isnull=False)
            .order_by("decided_at", "position").values_list("position", flat=True))
    return list(rows), "decided_at, then position"

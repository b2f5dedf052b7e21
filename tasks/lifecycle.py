"""Lifecycle tasks driven by celery-beat (django-celery-beat entries, see tasks/migrations)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from auctions import lifecycle


@shared_task(name="tasks.lifecycle.tick", ignore_result=True)
def tick() -> dict[str, int]:
    return lifecycle.timers_tick()


@shared_task(name="tasks.lifecycle.fire", ignore_result=True)
def fire(items: list) -> int:
    return lifecycle.timers_fire(items=[tuple(item) for item in items])


@shared_task(name="tasks.lifecycle.end", bind=True, acks_late=True, max_retries=None)
def end(self, auction_id: int, end_version: int) -> bool:
    try:
        return lifecycle.end_due(auction_id=auction_id, end_version=end_version)
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=0.2) from exc


@shared_task(name="tasks.lifecycle.end_many", bind=True, acks_late=True, max_retries=None)
def end_many(self, ends: list) -> int:
    try:
        return lifecycle.ends_due(ends=[(auction_id, end_version) for auction_id, end_version in ends])
    except OperationalError as exc:
        # Those already ended are not ended again: auction_end does nothing the second time.
        raise self.retry(exc=exc, countdown=0.2) from exc


@shared_task(name="tasks.lifecycle.sweep", ignore_result=True)
def sweep() -> int:
    return lifecycle.bids_sweep()


@shared_task(name="tasks.lifecycle.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    return lifecycle.consumers_reconcile()




"""Gavel's beat entries, stored by django-celery-beat (so operators see them in the admin).
Applied by a data migration and again by `manage.py gavel_beat_schedule`; idempotent."""

from __future__ import annotations

BEAT_ENTRIES = [
    # (name, task, every seconds, expire seconds): a tick not run within its expiry is dropped,
    # the next one does the same work.
    ("gavel: lifecycle timers", "tasks.lifecycle.tick", 1, 5),
    ("gavel: bid worker assignment", "tasks.lifecycle.reconcile", 1, 5),
    ("gavel: re-ring stale bids", "tasks.lifecycle.sweep", 2, 10),
]


def ensure_beat_schedule(IntervalSchedule=None, PeriodicTask=None) -> None:
    if IntervalSchedule is None or PeriodicTask is None:
        from django_celery_beat.models import IntervalSchedule, PeriodicTask
    for name, task, every, expire in BEAT_ENTRIES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "enabled": True, "queue": "default",
                      "expire_seconds": expire},
        )

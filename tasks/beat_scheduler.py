"""The beat scheduler: django-celery-beat's DatabaseScheduler, made to survive an entry deleted
while it reads the table."""

from __future__ import annotations

import logging

from django_celery_beat.schedulers import DatabaseScheduler

log = logging.getLogger(__name__)


class Scheduler(DatabaseScheduler):
    """django-celery-beat reads the enabled entries in one query and their schedules in a second
    (prefetch_related). An entry whose schedule row is deleted between the two, as deleting an
    interval in the admin does (the entry goes with it), arrives with no schedule at all, and the
    stock scheduler dies on it (AttributeError, beat exits). Such an entry is on its way out: it is
    left out of this read, and the deletion's change mark makes beat read the table again."""

    def enabled_models(self):
        kept = []
        for m in super().enabled_models():
            if m.scheduler is None:
                log.info("beat entry %r lost its schedule while being read; skipped", m.name)
            else:
                kept.append(m)
        return kept

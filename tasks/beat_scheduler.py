"""The beat scheduler: django-celery-beat's DatabaseScheduler, made to survive an entry deleted
while it reads the table, and to notice every change of the table's change mark."""

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

    def schedule_changed(self):
        """The stock check counts a change only when the change mark moves forward from one it
        saw before: `ts > (last or ts)`. When the mark's row is gone (the table was emptied, as a
        flush or a restore does), it reads None; the mark the next write sets is then compared
        with itself and counted as no change, and beat keeps the schedule it held before the
        wipe (stale entries, or none at all) until the next write, however long that is. Any
        difference from the mark seen last is a change here, which is what the mark is for."""
        seen = self._last_timestamp
        changed = super().schedule_changed()
        return changed or self._last_timestamp != seen

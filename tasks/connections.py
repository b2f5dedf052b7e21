"""Database connections in Celery workers: kept across tasks, under Django's own rules.

Celery's Django fixup closes every database connection before and after each task (celery
5.7 went back to that: a task interrupted by a SIGALRM time limit may leave a connection that
Django still believes usable). For Gavel's workers that meant a new PostgreSQL backend for
every doorbell and every end, which cost a bid worker more than ending the auction itself
(bench/timers.py, py-spy: connecting was 12-14% of an end, plus the backend's start in
PostgreSQL). Gavel's tasks run no time limits, so the workers treat connections the way
Django treats them between requests: `close_old_connections` before and after each task
closes one that saw an error and fails its health check, or that is older than CONN_MAX_AGE;
otherwise the next task reuses it.
"""

from __future__ import annotations

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

# The fixup still closes everything after this many of its calls (two per task); large, so
# that CONN_MAX_AGE decides instead.
FIXUP_REUSE_MAX = 1_000_000


def _recycle(sender=None, **_kwargs) -> None:
    # An eager task runs inside its caller's transaction, where closing would break it.
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    close_old_connections()


def install(app) -> None:
    app.conf.update(CELERY_DB_REUSE_MAX=FIXUP_REUSE_MAX)
    task_prerun.connect(_recycle, weak=False)
    task_postrun.connect(_recycle, weak=False)

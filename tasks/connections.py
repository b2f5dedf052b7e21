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

A worker's PostgreSQL sessions also bound how long they wait for a lock and how long they may
sit in a transaction: a bid worker that stalls mid-batch (a SIGSTOP in the fault suite, a VM
pause in life) holds its auction's row lock; without bounds the worker taking over blocks on
that lock, stops heartbeating, is declared dead in turn, and the stall spreads to every worker.
With them, a lock wait fails after WORKER_LOCK_TIMEOUT_MS (the task retries; the sweep rings
again), and PostgreSQL ends a session idle in a transaction for WORKER_IDLE_IN_TRANSACTION_S,
rolling the stalled batch back and freeing its locks (a batch takes milliseconds).
"""

from __future__ import annotations

from celery.signals import task_postrun, task_prerun, worker_init
from django.conf import settings
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created

# The fixup still closes everything after this many of its calls (two per task); large, so
# that CONN_MAX_AGE decides instead.
FIXUP_REUSE_MAX = 1_000_000


def _recycle(sender=None, **_kwargs) -> None:
    # An eager task runs inside its caller's transaction, where closing would break it.
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    close_old_connections()


def _bound_waits(sender=None, connection=None, **_kwargs) -> None:
    if connection is None or connection.vendor != "postgresql":
        return
    idle_ms = round(settings.WORKER_IDLE_IN_TRANSACTION_S * 1000)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, false), "
                       "set_config('idle_in_transaction_session_timeout', %s, false)",
                       [f"{settings.WORKER_LOCK_TIMEOUT_MS}ms", f"{idle_ms}ms"])


def _in_worker(**_kwargs) -> None:
    # Workers only: web requests and the tests' own transactions keep PostgreSQL's defaults.
    connection_created.connect(_bound_waits, weak=False)
    connections.close_all()  # any connection opened before now is opened again with the bounds


def install(app) -> None:
    app.conf.update(CELERY_DB_REUSE_MAX=FIXUP_REUSE_MAX)
    task_prerun.connect(_recycle, weak=False)
    task_postrun.connect(_recycle, weak=False)
    worker_init.connect(_in_worker, weak=False)

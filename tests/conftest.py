"""Shared fixtures. Tests that need real Celery workers or beat use tests/procs.py."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.db import OperationalError
from django.test import TransactionTestCase

from core import clock
from core.models import User

_flush = TransactionTestCase._fixture_teardown


def _flush_retrying_deadlocks(self):
    """Live tests flush the database while real workers and beat keep running; on PostgreSQL the
    flush's TRUNCATE can deadlock with a worker's transaction, and PostgreSQL aborts one of them.
    The worker retries its task; the flush retries here. Django's flush command wraps the
    database's error in a CommandError ("couldn't be flushed"), so that is what arrives."""
    for attempt in range(5):
        try:
            return _flush(self)
        except (OperationalError, CommandError) as exc:
            aborted = exc if isinstance(exc, OperationalError) else exc.__cause__
            if attempt == 4 or not isinstance(aborted, OperationalError):
                raise
            time.sleep(0.2)


TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Gavel's own Redis keys (assignment, heartbeats, rate limits, metrics) start empty in every
    test, and so do the socket counts a web process keeps in memory before reporting them.
    Celery's queues and bindings are left alone: a session-wide worker relies on them."""
    from core import counters
    from tasks.redis_client import client

    def wipe() -> None:
        counters.take_buffered()
        counters.flush()  # recordings still queued in this process land before the wipe, not after
        keys = list(client().scan_iter(match="gavel:*", count=1000))
        if keys:
            client().delete(*keys)

    wipe()
    yield
    wipe()


@pytest.fixture(autouse=True)
def _fresh_token_users():
    """Tests reuse user ids (rolled back, flushed); a user one test's request remembered must not
    answer for another test's user of the same id."""
    from core import tokens

    tokens.forget_user()
    yield
    tokens.forget_user()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 at production strength costs ~0.3 s a user; tests create hundreds."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db):
    def make(username: str, *, password: str = "correct-horse-42", staff: bool = False) -> User:
        return User.objects.create_user(username=username, password=password, is_staff=staff)

    return make


@pytest.fixture
def make_auction(db):
    from auctions import services

    def make(*, seller: str | None = None, starts_in: float = -1, lasts: float = 60, **fields):
        now = clock.now()
        fields.setdefault("title", "Lot")
        fields.setdefault("starting_price", 10)
        return services.auction_create(
            starts_at=now + timedelta(seconds=starts_in),
            ends_at=now + timedelta(seconds=starts_in + lasts),
            seller=seller,
            **fields,
        )

    return make


# --- real processes -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _procs_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("procs"))


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker, _procs_dir):
    """Two bid workers, the default worker and beat for the whole session, on the test database.
    Tests using it must also use `transactional_db` so the processes see their rows."""
    # Queues left by an earlier run on a shared Redis would carry messages for auction ids this
    # run reuses; they would be harmless (every task re-checks the database) but noisy.
    from tasks.redis_client import client
    from tests import procs

    stale = [k for pattern in ("auction.*", "default", "bidworkers", "unacked*", "_kombu.*")
             for k in client().scan_iter(match=pattern, count=1000)]
    if stale:
        client().delete(*stale)
    # Tests may replace an entry (a restarted worker); whatever is in the dict at the end is stopped.
    # Two bid workers, as `make run` starts: auctions (and their ends) spread over both.
    started = (procs.bid_worker("bids1"), procs.bid_worker("bids2"), procs.default_worker(), procs.beat(_procs_dir))
    running = {p.name: p for p in started}
    try:
        procs.wait_bid_worker_live("bids1")
        procs.wait_bid_worker_live("bids2")
        yield running
    finally:
        for p in running.values():
            p.stop()


@pytest.fixture
def stack(live_stack, transactional_db):
    """The live stack for one test: beat entries present (flushing wiped them) and a bid worker
    heartbeating again (the per-test Redis wipe removed it)."""
    from tasks import assignment
    from tasks.schedule import ensure_beat_schedule
    from tests import procs

    ensure_beat_schedule()
    for name, proc in live_stack.items():
        assert proc.alive(), f"{name} died:\n{proc.output()[-3000:]}"
    procs.wait_for(lambda: assignment.live_workers(), what="a live bid worker")
    return live_stack


@pytest.fixture(scope="session")
def _own_redis_server():
    """A redis-server of the session's own, for tests of Gavel's keys that must not meet the
    session's live workers and beat: their reconcile, every second, rewrites the assignment in
    the shared Redis from the auctions *they* see."""
    import redis as redis_lib

    from tests import procs

    port = procs.free_port()
    server = procs.redis_server(port)
    try:
        procs.wait_port(port)
        yield redis_lib.Redis(host="127.0.0.1", port=port, decode_responses=True)
    finally:
        server.kill()


@pytest.fixture
def own_redis(_own_redis_server, monkeypatch):
    """Gavel's own keys (tasks.redis_client.client()) on that private Redis, empty, for one test.
    Celery's broker is unchanged: doorbells still go to the session's Redis."""
    from tasks import redis_client

    _own_redis_server.flushdb()
    monkeypatch.setattr(redis_client, "_client", _own_redis_server)
    monkeypatch.setattr(redis_client, "_pid", os.getpid())
    return _own_redis_server



@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, plus: before the test database is dropped, end the sessions other threads
    of this process still hold. Threads that ran database work for an event loop (the intake's
    batches, requests) keep their persistent connection, as they should in a web process, and
    Django closes only the main thread's; PostgreSQL then refused to drop the database ("is being
    accessed by other users") and the run ended with a warning and a database left behind."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE datname = current_database() AND pid <> pg_backend_pid()")

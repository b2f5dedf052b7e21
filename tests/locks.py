"""Helpers for tests that make two connections meet at a real lock."""

from __future__ import annotations

import threading
import time

from django.db import connection, connections


def wait_until_blocked(what: str, deadline_s: float = 10.0) -> None:
    """Until another connection waits for a row lock (PostgreSQL), or a moment (SQLite, whose
    second writer waits on the database lock). Fails naming `what` should have waited."""
    if connection.vendor != "postgresql":
        time.sleep(0.5)
        return
    end = time.monotonic() + deadline_s
    with connection.cursor() as cursor:
        while time.monotonic() < end:
            # Activity statistics are snapshotted once per transaction, and the caller may be in one.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError(f"{what} never waited for the lock")


def in_thread(target) -> tuple[threading.Thread, dict]:
    """Run `target` on a thread of its own (its own connection, closed after); the dict gets
    its "value" or its "error"."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = target()
        except BaseException as exc:  # reported by the test
            out["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out

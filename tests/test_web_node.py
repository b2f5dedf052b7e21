"""A real uvicorn web node on the test database: what it keeps open between requests."""

from __future__ import annotations

import concurrent.futures
import urllib.request

import pytest
from django.db import connection

from tests import procs


def _backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_a_web_node_keeps_no_database_connection_per_request(transactional_db):
    """Under ASGI each request's sync code runs in a thread of its own: persistent connections
    were never reused and piled up until PostgreSQL refused new clients (HTTP 500s)."""
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends (pg_stat_activity); the PostgreSQL CI run has them")
    port = procs.free_port()
    node = procs.web_node("web", port)
    try:
        procs.wait_port(port)
        before = _backends()

        def hit(_: int) -> None:
            for _ in range(10):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/auctions", timeout=10) as answer:
                    assert answer.status == 200

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(hit, range(8)))
        assert _backends() - before <= 2, "80 requests left database connections open"
    finally:
        node.stop()

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


POOL = 3


def test_a_web_node_holds_at_most_its_pool_of_database_connections(transactional_db):
    """Under ASGI a request's sync code may run on any of many threads: persistent connections
    per thread were never reused and piled up until PostgreSQL refused new clients (HTTP 500s).
    The node's pool bounds them, however many requests run at once."""
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends (pg_stat_activity); the PostgreSQL CI run has them")
    port = procs.free_port()
    node = procs.web_node("web", port, DB_POOL_MAX=str(POOL))
    try:
        procs.wait_port(port)
        before = _backends()

        def hit(_: int) -> None:
            for _ in range(10):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/auctions", timeout=10) as answer:
                    assert answer.status == 200

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(hit, range(16)))
        assert _backends() - before <= POOL, "160 requests left more connections open than the pool holds"
    finally:
        node.stop()

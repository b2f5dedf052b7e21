"""A real uvicorn web node on the test database: what it keeps open between requests."""

from __future__ import annotations

import concurrent.futures
import json
import urllib.error
import urllib.request

import pytest
from django.db import connection

from tests import procs
from tests.test_ws import token_for


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


def test_rest_bids_at_once_on_a_pool_of_one_connection_are_all_stored(transactional_db, make_user, make_auction):
    """A REST bid's request waits for its intake batch (auctions/intake_batch.py) without holding a
    database connection: with a pool of one, a request that kept its own while waiting would leave
    the batch none until the pool gave up (503 after DB_POOL_TIMEOUT_S)."""
    if connection.vendor != "postgresql":
        pytest.skip("the pool is PostgreSQL's (psycopg_pool); the PostgreSQL CI run has it")

    users = [make_user(f"bidder{k}") for k in range(16)]
    auction = make_auction(min_increment=1)
    port = procs.free_port()
    node = procs.web_node("web", port, DB_POOL_MAX="1", DB_POOL_TIMEOUT_S="3")
    try:
        procs.wait_port(port)

        def bid(k: int) -> tuple[int, dict]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/auctions/{auction.pk}/bids", method="POST",
                data=json.dumps({"amount": 10 + k, "client_bid_id": f"r{k}"}).encode(),
                headers={"Content-Type": "application/json",
                         "Authorization": f"Bearer {token_for(users[k])}"})
            try:
                with urllib.request.urlopen(request, timeout=20) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as refused:
                return refused.code, json.loads(refused.read())

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(bid, range(16)))
    finally:
        node.stop()
    assert [status for status, _ in answers] == [202] * 16, answers
    assert sorted(b["position"] for _, b in answers) == list(range(1, 17))
    assert auction.bids.count() == 16

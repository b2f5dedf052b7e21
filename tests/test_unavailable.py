"""A database or Redis that is down or restarting answers 503 with Retry-After (the fault suite,
bench/faults.py, restarts both under load); a bug still answers 500. Neither shows internals."""

from __future__ import annotations

import pytest
import redis.exceptions
from django import db

from auctions import selectors
from tests.api_client import assert_error


@pytest.mark.parametrize("exc", [
    db.OperationalError("connection failed: the database system is starting up"),
    db.InterfaceError("connection already closed"),
    redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
])
def test_an_unreachable_backing_service_is_a_503_to_retry(client, monkeypatch, exc):
    def down(**kwargs):
        raise exc

    monkeypatch.setattr(selectors, "auction_list", down)
    response = client.get("/api/auctions")
    assert_error(response, 503, "unavailable")
    assert response["Retry-After"] == "1"
    assert b"127.0.0.1" not in response.content and b"Traceback" not in response.content


def test_a_bug_is_still_a_500(client, monkeypatch):
    def boom(**kwargs):
        raise ValueError("not an outage")

    monkeypatch.setattr(selectors, "auction_list", boom)
    assert_error(client.get("/api/auctions"), 500, "internal_error")

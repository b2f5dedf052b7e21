"""A database or Redis that is down or restarting answers 503 with Retry-After (the fault suite,
bench/faults.py, restarts both under load); a bug still answers 500. Neither shows internals."""

from __future__ import annotations

import json

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


@pytest.mark.usefixtures("transactional_db")  # the socket's own threads read the database
def test_a_socket_bid_meeting_an_outage_gets_an_unavailable_error_and_the_socket_stays(make_user, make_auction,
                                                                                       monkeypatch):
    from auctions import intake_batch
    from tests.test_ws import connect, receive, run, token_for

    alice = make_user("alice")
    auction = make_auction()

    def down(submissions):
        raise db.OperationalError("connection failed: the database system is shutting down")

    monkeypatch.setattr(intake_batch, "_store", down)

    async def scenario():
        comm = await connect(f"/ws/auctions/{auction.pk}/", token=token_for(alice))
        assert (await receive(comm))["type"] == "snapshot"
        await comm.send_json_to({"type": "bid", "amount": 25, "client_bid_id": "c1"})
        error = await receive(comm)
        assert (error["type"], error["code"], error["client_bid_id"]) == ("error", "unavailable", "c1")
        assert "shutting down" not in json.dumps(error)
        await comm.send_json_to({"type": "ping"})
        assert (await receive(comm))["type"] == "pong"  # still open
        await comm.disconnect()

    run(scenario())

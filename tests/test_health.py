"""GET /api/health names the part that is down, with a reason, and answers 503 for it."""

from __future__ import annotations

from tasks import assignment
from tests.outage import channel_layer_unreachable, redis_unreachable


def health(client) -> tuple[int, dict[str, str]]:
    response = client.get("/api/health")
    body = response.json()
    assert body["status"] == ("ok" if response.status_code == 200 else "fail")
    return response.status_code, body["checks"]


def all_running() -> None:
    assignment.heartbeat("bids1@test")
    assignment.record_tick()


def test_every_part_up_is_200_and_names_each_part(client, db):
    all_running()
    assert health(client) == (200, {"database": "ok", "broker": "ok", "channel_layer": "ok", "bid_workers": "ok",
                                    "scheduler": "ok"})


def test_a_broker_on_a_dead_port_is_named_as_the_failing_part(client, db):
    all_running()
    with redis_unreachable():
        status, checks = health(client)
    assert status == 503
    assert checks["broker"] == "error: ConnectionError"
    assert checks["database"] == "ok" and checks["channel_layer"] == "ok"
    # Heartbeats and the tick live in that Redis: they cannot be known, and say why.
    assert checks["bid_workers"] == checks["scheduler"] == "unknown: broker unreachable"
    assert health(client)[0] == 200, "back once the broker is"


def test_a_channel_layer_on_a_dead_port_is_named_as_the_failing_part(client, db):
    all_running()
    with channel_layer_unreachable():
        status, checks = health(client)
    assert status == 503
    assert checks["channel_layer"] == "error: ConnectionError"
    assert {part: reason for part, reason in checks.items() if part != "channel_layer"} == {
        "database": "ok", "broker": "ok", "bid_workers": "ok", "scheduler": "ok"}


def test_no_live_bid_worker_is_named_with_its_reason(client, db):
    assignment.record_tick()
    assignment.heartbeat("bids1@test", now=0)  # heartbeated long ago
    status, checks = health(client)
    assert status == 503 and checks["bid_workers"] == "no live bid worker"
    assert checks["scheduler"] == "ok"


def test_a_database_that_is_away_is_named_as_the_failing_part(client, db, monkeypatch):
    from django.db import connection
    from django.db.utils import OperationalError

    all_running()

    def away(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed")

    with monkeypatch.context() as patched:
        patched.setattr(connection, "cursor", away)
        status, checks = health(client)
    assert status == 503 and checks["database"] == "error: OperationalError"
    assert checks["broker"] == "ok"

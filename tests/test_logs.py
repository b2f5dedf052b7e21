"""Structured logs (core/logs.py): the decider, the intake, ends and cancels, the doorbell and the
sockets log their auction and bid ids as fields; LOG_FORMAT=json writes one JSON object per line
in every kind of process, and keeps credentials out."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from datetime import timedelta

import pytest
from channels.testing.websocket import WebsocketCommunicator

from auctions import services
from core import tokens
from core.asgi import application  # at import: setting it up configures logging, which would drop caplog's handler
from core.errors import ServiceError
from core.logs import JsonFormatter, PlainFormatter
from tests import procs


def json_lines(records: list[logging.LogRecord]) -> list[dict]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in records]


def test_json_lines_carry_the_auction_and_bid_ids_of_receipt_decisions_and_the_end(
        db, make_user, make_auction, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction()
    # What waits for a commit runs at the end of each block, as after a commit; the rows stay in
    # the test's transaction, out of sight of a live stack's workers (they would decide first).
    with django_capture_on_commit_callbacks(execute=True):
        first = services.bid_submit(auction_id=auction.pk, user=alice, amount=20).bid
        second = services.bid_submit(auction_id=auction.pk, user=bob, amount=5).bid
        with pytest.raises(ServiceError):
            services.bid_submit(auction_id=auction.pk, user=alice, amount=0)
    with django_capture_on_commit_callbacks(execute=True):
        services.bids_decide_pending(auction_id=auction.pk)
        services.auction_end(auction_id=auction.pk, now=auction.ends_at + timedelta(seconds=1))
        other = make_auction()
        services.auction_cancel(auction_id=other.pk)

    lines = json_lines(caplog.records)
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line) and line["ts"].endswith("Z")
    ours = [line for line in lines if line["logger"] in ("auctions.services", "tasks.doorbell")]
    received = {line["bid_id"]: line for line in ours if "received" in line["message"]}
    assert set(received) == {first.pk, second.pk}
    assert all(line["auction_id"] == auction.pk and line["channel"] == "rest" for line in received.values())
    assert [(line["auction_id"], line["reason"]) for line in ours if "refused" in line["message"]] == [
        (auction.pk, "invalid_amount")]
    decided = {line["bid_id"]: line["status"] for line in ours if "bid_id" in line and "status" in line}
    assert decided == {first.pk: "accepted", second.pk: "rejected"}
    batch = [line for line in ours if line.get("bid_count") == 2]
    assert len(batch) == 1 and batch[0]["auction_id"] == auction.pk and batch[0]["accepted"] == 1
    assert batch[0]["first_bid_id"] == first.pk and batch[0]["last_bid_id"] == second.pk
    finals = {line["auction_id"]: line["outcome"] for line in ours if "outcome" in line}
    assert finals == {auction.pk: "sold", other.pk: "cancelled"}
    rings = [line for line in ours if line["logger"] == "tasks.doorbell"]
    assert rings and all(line["auction_id"] == auction.pk for line in rings)


def test_a_socket_logs_its_auction_and_user_never_its_token(transactional_db, make_user, make_auction, caplog):
    caplog.set_level(logging.DEBUG)
    alice = make_user("alice")
    auction = make_auction()
    access = tokens.access_token_issue(user=alice)["access"]

    async def scenario():
        comm = WebsocketCommunicator(application, f"/ws/auctions/{auction.pk}/?token={access}")
        assert (await comm.connect(timeout=5))[0]
        await comm.receive_from(timeout=5)
        await comm.send_to(text_data=json.dumps({"type": "resume", "after_seq": 0}))
        await comm.receive_from(timeout=5)
        await comm.disconnect()

    asyncio.run(scenario())
    resumes = [line for line in json_lines(caplog.records) if line["message"].startswith("resume of auction")]
    assert resumes == [{**resumes[0], "auction_id": auction.pk, "user_id": alice.pk, "after_seq": 0}]
    assert access not in caplog.text


def test_the_plain_format_shows_the_ids_after_the_message():
    record = logging.LogRecord("auctions.services", logging.INFO, __file__, 1, "bid %s accepted", (7,), None)
    record.auction_id, record.bid_id, record.position = 42, 7, 3
    line = PlainFormatter().format(record)
    assert line.endswith("INFO auctions.services: bid 7 accepted auction_id=42 bid_id=7")


def test_credentials_in_a_message_or_a_field_are_redacted_in_json():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "GET /ws/?token=%s", ("eyJ.abc.def",), None)
    record.header = "Authorization: Bearer eyJ.s3cr3t.sig"
    line = JsonFormatter().format(record)
    assert "eyJ" not in line and json.loads(line)["message"] == "GET /ws/?token=[redacted]"
    assert json.loads(line)["header"] == "Authorization: Bearer [redacted]"


def _shell(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=procs.ROOT, capture_output=True,
                          text=True, timeout=60, env={**procs._env(), **env})


def test_log_format_json_makes_a_process_write_one_json_object_per_line(transactional_db, make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction()
    # No doorbell: a bid worker of the session's live stack would decide the bid first.
    code = (f"from auctions import services; from core.models import User; from tasks import doorbell; "
            f"doorbell.ring = doorbell.ring_many = lambda *args, **kwargs: None; "
            f"bid = services.bid_submit(auction_id={auction.pk}, user=User.objects.get(pk={alice.pk}), amount=20).bid; "
            f"services.bids_decide_pending(auction_id={auction.pk}); "
            # Let the publishing thread finish before the interpreter exits under it.
            f"from realtime import publish; publish.flush(); print('bid', bid.pk)")
    done = _shell(code, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    assert done.returncode == 0, done.stderr[-3000:]
    bid_id = int(done.stdout.split("bid ")[-1])
    not_json = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert not not_json, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    mine = [line for line in lines if line.get("bid_id") == bid_id]
    assert [line["message"].split()[2] for line in mine] == ["received", "accepted"], done.stderr[-3000:]
    assert all(line["auction_id"] == auction.pk and line["logger"] == "auctions.services" for line in mine)


def test_an_unknown_log_format_is_refused_at_start():
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=procs.ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**procs._env(), "LOG_FORMAT": "xml", "DJANGO_SETTINGS_MODULE": "core.settings"})
    assert done.returncode != 0 and "LOG_FORMAT must be one of plain, json" in done.stderr


@pytest.mark.slow
def test_a_bid_worker_logs_json_with_its_name(transactional_db):
    worker = procs.bid_worker("bids-json", LOG_FORMAT="json")
    try:
        procs.wait_for(lambda: 'ready."' in worker.output(), timeout=30, what="the worker's ready line")
    finally:
        worker.stop()
    lines = [line for line in worker.output().splitlines() if line.startswith("{")]
    parsed = [json.loads(line) for line in lines]
    assert any(line["logger"] == "celery.apps.worker" and line["message"].endswith("ready.") for line in parsed)
    assert any(line["logger"] == "gavel.bidworker" and line.get("worker") == "bids-json@test" for line in parsed)


@pytest.mark.slow
def test_a_web_node_logs_json_and_no_token(transactional_db, make_user, make_auction):
    import urllib.request

    import websockets

    from deploy.launch import WEB_NODE

    alice = make_user("alice")
    auction = make_auction()
    access = tokens.access_token_issue(user=alice)["access"]
    port = procs.free_port()
    node = procs.Proc("web-json", [sys.executable, *WEB_NODE, "--host", "127.0.0.1", "--port", str(port),
                                   "--lifespan", "off"], {**procs._env(), "LOG_FORMAT": "json"})
    try:
        procs.wait_port(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/auctions/{auction.pk}", timeout=10) as answer:
            assert answer.status == 200

        async def watch():
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/auctions/{auction.pk}/?token={access}") as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"

        asyncio.run(watch())
    finally:
        node.stop()
    output = node.output()
    assert access not in output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    messages = [(line["logger"], line["message"]) for line in lines]
    assert any(name == "uvicorn.access" and f"GET /api/auctions/{auction.pk}" in text for name, text in messages)
    assert any(name == "uvicorn.error" and "?token=[redacted]" in text for name, text in messages), messages

"""GET /metrics: what real activity through the services shows, read back with Prometheus's own
text parser, and that a scrape stays cheap and never fails."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from auctions import lifecycle, services
from core import clock, counters, metrics
from core.errors import ServiceError


def scrape(client) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by its name, parsed by prometheus_client (so the text must be valid)."""
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name: str, **labels: str) -> float:
    matches = [v for lbl, v in samples.get(name, []) if lbl == labels]
    assert len(matches) == 1, f"{name}{labels}: {samples.get(name)}"
    return matches[0]


@pytest.fixture
def committed(db, django_capture_on_commit_callbacks):
    """`with committed(): ...` runs what the block's transactions left for after their commit,
    as a commit would (the counts, the doorbells). The rows themselves stay in the test's
    transaction, so the bid workers of a live stack that another test started never see them
    and cannot decide or end anything in the test's place."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def refused(**submit) -> str:
    with pytest.raises(ServiceError) as caught:
        services.bid_submit(**submit)
    return caught.value.code


def test_bids_received_decided_and_an_auction_ended_show_as_counts_and_latency_buckets(
        client, committed, make_user, make_auction):
    alice, bob, carol, sam = (make_user(n) for n in ("alice", "bob", "carol", "sam"))
    auction = make_auction(starting_price=10, seller="sam")
    t0 = clock.now()
    with committed():
        for user, amount in ((alice, 20), (alice, 5), (bob, 5000), (bob, 30)):
            services.bid_submit(auction_id=auction.pk, user=user, amount=amount, now=t0)
        assert refused(auction_id=auction.pk, user=sam, amount=50) == "seller_cannot_bid"
        assert refused(auction_id=10**9, user=alice, amount=50) == "not_found"
    with committed():
        # Decided 0.3 s after they were received: each lands in the 0.5 s bucket, none in 0.25 s.
        assert services.bids_decide_pending(auction_id=auction.pk, now=t0 + timedelta(seconds=0.3)) == 4
    with committed():
        services.bid_submit(auction_id=auction.pk, user=carol, amount=50, channel="ws", now=t0)

    m = scrape(client)
    assert value(m, "gavel_bids_received_total", channel="rest") == 4
    assert value(m, "gavel_bids_received_total", channel="ws") == 1
    assert value(m, "gavel_bids_refused_total", reason="seller_cannot_bid") == 1
    assert value(m, "gavel_bids_refused_total", reason="not_found") == 1
    assert value(m, "gavel_bids_decided_total", outcome="accepted", reason="") == 2
    assert value(m, "gavel_bids_decided_total", outcome="rejected", reason="below_minimum") == 1
    assert value(m, "gavel_bids_decided_total", outcome="rejected", reason="insufficient_funds") == 1
    assert value(m, "gavel_bid_decision_latency_seconds_bucket", le="0.25") == 0
    assert value(m, "gavel_bid_decision_latency_seconds_bucket", le="0.5") == 4
    assert value(m, "gavel_bid_decision_latency_seconds_count") == 4
    assert value(m, "gavel_bid_decision_latency_seconds_sum") == pytest.approx(1.2)
    # Carol's bid waits: the queue gauges see it, and how long it has waited.
    assert value(m, "gavel_bids_queued") == 1
    assert value(m, "gavel_auction_bids_queued", auction_id=str(auction.pk)) == 1
    waited = (clock.now() - t0).total_seconds()
    assert 0 < value(m, "gavel_bids_oldest_queued_age_seconds") <= waited + 0.01
    assert value(m, "gavel_auctions_finished_total", outcome="sold") == 0

    # The end decides Carol's bid first (a minute after its receipt: past every bound) and sells.
    with committed():
        assert services.auction_end(auction_id=auction.pk, now=auction.ends_at + timedelta(seconds=1))
    m = scrape(client)
    assert value(m, "gavel_bids_decided_total", outcome="accepted", reason="") == 3
    assert value(m, "gavel_bid_decision_latency_seconds_bucket", le="10.0") == 4
    assert value(m, "gavel_bid_decision_latency_seconds_bucket", le="+Inf") == 5
    assert value(m, "gavel_auctions_finished_total", outcome="sold") == 1
    assert value(m, "gavel_bids_queued") == 0
    assert "gavel_auction_bids_queued" not in m, "only auctions with queued bids have a series"
    assert value(m, "gavel_bids_oldest_queued_age_seconds") == 0
    assert value(m, "gavel_auctions", status="ended") == 1


def test_a_cancel_counts_its_pending_bids_as_rejected_and_the_auction_as_cancelled(
        client, committed, make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction()
    with committed():
        services.bid_submit(auction_id=auction.pk, user=alice, amount=20)
        services.auction_cancel(auction_id=auction.pk)
    m = scrape(client)
    assert value(m, "gavel_bids_decided_total", outcome="rejected", reason="auction_not_live") == 1
    assert value(m, "gavel_auctions_finished_total", outcome="cancelled") == 1
    assert value(m, "gavel_auctions_finished_total", outcome="unsold") == 0


def test_nothing_is_counted_for_a_decision_that_rolled_back(client, committed, make_user, make_auction,
                                                            monkeypatch):
    alice = make_user("alice")
    auction = make_auction()
    with committed():
        services.bid_submit(auction_id=auction.pk, user=alice, amount=20)

    def crash(*args):
        raise RuntimeError("the database went away mid-batch")

    with committed(), monkeypatch.context() as patched:
        patched.setattr(services, "_save_decisions", crash)
        with pytest.raises(RuntimeError):
            services.bids_decide_pending(auction_id=auction.pk)
    m = scrape(client)
    assert value(m, "gavel_bids_decided_total", outcome="accepted", reason="") == 0
    assert value(m, "gavel_bid_decision_latency_seconds_count") == 0
    assert value(m, "gavel_bids_queued") == 1
    with committed():
        services.bids_decide_pending(auction_id=auction.pk)
    assert value(scrape(client), "gavel_bids_decided_total", outcome="accepted", reason="") == 1


def test_a_late_end_lands_in_the_timer_lateness_histogram(client, committed, make_auction):
    auction = make_auction(lasts=1.3)  # it started a second ago: its end is 0.3 s away
    time.sleep(max((auction.ends_at - clock.now()).total_seconds(), 0) + 0.3)
    with committed():
        assert lifecycle.end_due(auction_id=auction.pk, end_version=auction.end_version)
    m = scrape(client)
    assert value(m, "gavel_timer_lateness_seconds_bucket", le="0.25") == 0
    assert value(m, "gavel_timer_lateness_seconds_bucket", le="1.0") == 1
    assert value(m, "gavel_timer_lateness_seconds_count") == 1
    assert value(m, "gavel_auctions_finished_total", outcome="unsold") == 1


def test_only_the_auctions_with_the_most_queued_bids_get_a_series(client, db, make_user, make_auction, monkeypatch):
    monkeypatch.setattr(metrics, "PENDING_TOP_AUCTIONS", 2)
    users = [make_user(f"u{k}") for k in range(3)]
    auctions = [make_auction() for _ in range(3)]
    for auction, n in zip(auctions, (1, 3, 2), strict=True):
        for user in users[:n]:
            services.bid_submit(auction_id=auction.pk, user=user, amount=20)
    m = scrape(client)
    assert value(m, "gavel_bids_queued") == 6
    assert value(m, "gavel_auctions_with_queued_bids") == 3
    assert sorted((labels["auction_id"], v) for labels, v in m["gavel_auction_bids_queued"]) == sorted(
        [(str(auctions[1].pk), 3), (str(auctions[2].pk), 2)])
    assert len(m["gavel_auction_bids_oldest_queued_age_seconds"]) == 2


def test_a_scrape_reads_only_the_queued_bids_and_a_bounded_number_of_queries(client, db, make_user, make_auction):
    from django.test.utils import CaptureQueriesContext

    alice = make_user("alice")
    auction = make_auction()
    for amount in (20, 30, 40):
        services.bid_submit(auction_id=auction.pk, user=alice, amount=amount)
    services.bids_decide_pending(auction_id=auction.pk)
    with CaptureQueriesContext(connection) as queries:
        scrape(client)  # the first one sums the ledger as well
    with CaptureQueriesContext(connection) as cached:
        scrape(client)
    bid_reads = [q["sql"] for q in queries.captured_queries if '"auctions_bid"' in q["sql"]]
    assert len(bid_reads) == 1 and "queued" in bid_reads[0], bid_reads
    assert len(queries.captured_queries) == 3, [q["sql"] for q in queries.captured_queries]
    assert len(cached.captured_queries) == 2, "the ledger sum is cached between scrapes"


def test_the_ledger_gauge_is_1_while_balances_sum_to_zero_and_0_once_they_do_not(client, db, make_user, settings):
    from core.models import Account
    from tasks.redis_client import client as redis

    alice = make_user("alice")
    m = scrape(client)
    assert value(m, "gavel_ledger_balanced") == 1 and value(m, "gavel_ledger_sum") == 0
    Account.objects.filter(user=alice).update(balance=1007)  # coins from nowhere
    assert value(scrape(client), "gavel_ledger_balanced") == 1, "cached for METRICS_LEDGER_CHECK_S"
    redis().delete(metrics.LEDGER_KEY)  # the cache expires
    m = scrape(client)
    assert value(m, "gavel_ledger_balanced") == 0 and value(m, "gavel_ledger_sum") == 7
    assert value(m, "gavel_ledger_checked_age_seconds") < 1


def test_socket_drops_counted_in_a_web_process_reach_the_metrics_with_its_report(client, db):
    import asyncio

    from realtime.layer import _BoundedQueue
    from realtime.outbox import Outbox

    async def stalled(message):
        await asyncio.Event().wait()  # the client never reads again

    async def scenario():
        closed = []
        box = Outbox(stalled, capacity=3, on_overflow=lambda: closed.append(True))
        for n in range(5):  # one in flight, three queued, the fifth overflows
            box.put({"type": "websocket.send", "text": str(n)})
        assert closed == [True]
        queue = _BoundedQueue(2, b"overflow")
        for _ in range(4):  # two buffered, the third overflows them, the fourth waits for the marker
            queue.put_nowait(b"m")

    asyncio.run(scenario())
    counters.node_report(node="web-a:1", open_sockets=7, now=time.time())
    counters.node_report(node="web-b:2", open_sockets=1, now=time.time() - 60)  # a node gone quiet
    m = scrape(client)
    assert value(m, "gavel_ws_frames_dropped_total", where="socket") == 4
    assert value(m, "gavel_ws_slow_closes_total") == 1
    assert value(m, "gavel_ws_frames_dropped_total", where="process") == 4
    assert value(m, "gavel_sockets_open_per_node", node="web-a:1") == 7
    assert value(m, "gavel_sockets_open") == 7, "a node that stopped reporting no longer counts"


def test_open_sockets_and_resumes_are_reported_by_the_web_process(transactional_db, make_user, make_auction, client):
    import asyncio
    import json
    import os
    import socket

    from asgiref.sync import sync_to_async
    from channels.testing.websocket import WebsocketCommunicator

    from core.asgi import application
    from tests.procs import wait_for

    auction = make_auction()
    node = f"{socket.gethostname()}:{os.getpid()}"

    def metrics_now():
        try:
            return scrape(client)
        finally:
            connection.close()  # a worker thread's connection would outlive the test database

    def reported(sockets: int, resumes: int) -> bool:
        m = metrics_now()
        mine = [v for labels, v in m.get("gavel_sockets_open_per_node", []) if labels == {"node": node}]
        return (value(m, "gavel_sockets_open") == sockets and mine == [sockets]
                and value(m, "gavel_ws_resumes_total", answer="events") == resumes)

    async def scenario():
        socks = [WebsocketCommunicator(application, f"/ws/auctions/{auction.pk}/") for _ in range(2)]
        for comm in socks:
            assert (await comm.connect(timeout=5))[0]
            assert json.loads(await comm.receive_from(timeout=5))["type"] == "snapshot"
        await socks[0].send_to(text_data=json.dumps({"type": "resume", "after_seq": 0}))
        frame = json.loads(await socks[0].receive_from(timeout=5))
        assert frame["type"] == "event" and frame["event"]["seq"] == 1
        await sync_to_async(wait_for, thread_sensitive=False)(lambda: reported(2, 1), timeout=5,
                                                              what="2 open, 1 resume")
        for comm in socks:
            await comm.disconnect()
        await sync_to_async(wait_for, thread_sensitive=False)(lambda: reported(0, 1), timeout=5, what="0 open")

    asyncio.run(scenario())


def test_a_scrape_without_redis_still_answers_with_what_the_database_knows(client, db):
    from tests.outage import redis_unreachable

    with redis_unreachable():
        m = scrape(client)
    assert value(m, "gavel_metrics_source_up", source="redis") == 0
    assert value(m, "gavel_metrics_source_up", source="database") == 1
    assert value(m, "gavel_bids_queued") == 0 and value(m, "gavel_ledger_balanced") == 1
    assert "gavel_bids_received_total" not in m


def test_metrics_off_loopback_need_the_token(client, settings, db):
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    ok = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200


def test_metrics_without_a_configured_token_are_loopback_only(client, settings, db):
    settings.METRICS_TOKEN = None
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.slow
def test_decisions_made_in_a_bid_worker_process_show_in_a_web_scrape(stack, client, make_user, make_auction):
    """Across processes, as deployed: the bid worker records, the web node's scrape reads."""
    from auctions.models import Bid
    from tests.procs import wait_for

    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=20)
    services.bid_submit(auction_id=auction.pk, user=bob, amount=21)  # below 20 + 5
    wait_for(lambda: not Bid.objects.filter(auction=auction, status=Bid.Status.QUEUED).exists(), what="decisions")

    def decided() -> tuple[float, float]:
        m = scrape(client)
        return (value(m, "gavel_bids_decided_total", outcome="accepted", reason=""),
                value(m, "gavel_bids_decided_total", outcome="rejected", reason="below_minimum"))

    wait_for(lambda: decided() == (1, 1), timeout=5, what="the worker's counts")
    m = scrape(client)
    assert value(m, "gavel_bid_decision_latency_seconds_count") == 2
    assert value(m, "gavel_bid_decision_latency_seconds_bucket", le="5.0") == 2  # a live stack decides in ms to ~1 s
    assert value(m, "gavel_bids_received_total", channel="rest") == 2
    assert value(m, "gavel_bid_workers_live") >= 1


def test_a_recording_reaches_redis_from_the_writer_thread_without_waiting_for_it(db):
    """Recording queues; the process's metrics thread sends it (core.counters._Writer), so a
    bid worker's batch or an intake batch never waits for the metrics round trip."""
    from tasks.redis_client import client
    from tests.procs import wait_for

    counters.bids_received({"ws": 3})
    counters.bids_received({"ws": 2, "rest": 1})
    field = counters.BIDS_RECEIVED.field
    wait_for(lambda: client().hget(counters.BIDS_RECEIVED.key, field({"channel": "ws"})) == "5", timeout=5,
             what="the writer thread's send")
    assert client().hget(counters.BIDS_RECEIVED.key, field({"channel": "rest"})) == "1"

from auctions import services
from core import metrics


def test_metrics_count_bids_by_outcome_in_prometheus_text(client, make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction(starting_price=10)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=20)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=5)
    services.bids_decide_pending(auction_id=auction.pk)
    services.bid_submit(auction_id=auction.pk, user=alice, amount=50)
    metrics.timer_lateness_observe(0.2)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    lines = response.content.decode().splitlines()
    assert "gavel_bids_received_total 3" in lines
    assert 'gavel_bids_decided_total{outcome="accepted",reason=""} 1' in lines
    assert 'gavel_bids_decided_total{outcome="rejected",reason="below_minimum"} 1' in lines
    assert "gavel_bids_queued 1" in lines
    assert "gavel_sockets_open 0" in lines
    assert 'gavel_timer_lateness_seconds_bucket{le="0.25"} 1' in lines
    assert 'gavel_timer_lateness_seconds_bucket{le="0.1"} 0' in lines
    assert "gavel_timer_lateness_seconds_count 1" in lines


def test_metrics_off_loopback_need_the_token(client, settings, db):
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    ok = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200


def test_metrics_without_a_configured_token_are_loopback_only(client, settings, db):
    settings.METRICS_TOKEN = None
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_open_sockets_are_counted_while_they_are_open(transactional_db, make_auction, client):
    import asyncio

    from asgiref.sync import sync_to_async
    from channels.testing.websocket import WebsocketCommunicator
    from django.db import connection

    from core.asgi import application
    from tests.procs import wait_for

    auction = make_auction()

    def gauge() -> int:
        try:
            lines = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode().splitlines()
        finally:
            connection.close()  # a worker thread's connection would outlive the test database
        return int(next(line for line in lines if line.startswith("gavel_sockets_open ")).split()[1])

    async def scenario():
        socks = [WebsocketCommunicator(application, f"/ws/auctions/{auction.pk}/") for _ in range(2)]
        for comm in socks:
            assert (await comm.connect(timeout=5))[0]
        await sync_to_async(wait_for, thread_sensitive=False)(lambda: gauge() == 2, timeout=5, what="2 open")
        for comm in socks:
            await comm.disconnect()
        await sync_to_async(wait_for, thread_sensitive=False)(lambda: gauge() == 0, timeout=5, what="0 open")

    asyncio.run(scenario())

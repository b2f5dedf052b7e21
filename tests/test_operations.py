"""Operating bid workers (tasks.operations) and its admin page (/admin/bid-workers/): the services
directly, then the page through Django's test client as staff, as staff without the permission to
change auctions, and as a user who is not staff. Gavel's keys live in a Redis of the test's own
(`own_redis`); the doorbells rung are recorded rather than sent (`sent`): a doorbell reaching a
real worker is tests/test_bid_pipeline.py's business."""

from __future__ import annotations

import contextlib
import time

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from redis.exceptions import ConnectionError as RedisConnectionError

from auctions import services
from tasks import assignment, doorbell, operations
from tasks.queues import auction_queue

pytestmark = pytest.mark.django_db

PAGE = "/admin/bid-workers/"


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, str]]:
    """(task, queue) of every message tasks.doorbell hands to Celery during the test."""
    messages: list[tuple[str, str]] = []

    class Control:
        def add_consumer(self, queue, **_kwargs):
            messages.append(("add_consumer", queue))

    class Producer:
        @contextlib.contextmanager
        def batch(self):
            yield

    class App:
        control = Control()

        @contextlib.contextmanager
        def producer_or_acquire(self):
            yield Producer()

        def send_task(self, name, args=None, queue=None, **_kwargs):
            messages.append((name, queue))

    monkeypatch.setattr(doorbell, "_app", App)
    return messages


def _doorbells(sent: list[tuple[str, str]], auction_id: int) -> int:
    return sent.count((doorbell.DECIDE_TASK, auction_queue(auction_id)))


@pytest.fixture
def workers(own_redis):
    """Two live bid workers and one whose last heartbeat is a minute old."""
    now = time.time()
    assignment.heartbeat("bids1@a", now=now)
    assignment.heartbeat("bids2@a", now=now)
    assignment.heartbeat("bids3@b", now=now - 60)
    return ["bids1@a", "bids2@a", "bids3@b"]


@pytest.fixture
def lots(workers, make_user, make_auction):
    """Four live auctions: one on each worker (the third's is orphaned, its worker is silent) and
    one nobody has yet; the first has three bids waiting for a decision. No bid worker runs, so
    they stay queued."""
    make_user("seller")
    alice, bob = make_user("alice"), make_user("bob")
    a, b, c, d = (make_auction(seller="seller", title=t) for t in ("Vase", "Clock", "Lamp", "Rug"))
    for auction, worker in ((a, "bids1@a"), (b, "bids2@a"), (c, "bids3@b")):
        assignment._move(auction.pk, worker, None)
    for k, user in enumerate((alice, bob, alice)):
        services.bid_submit(auction_id=a.pk, user=user, amount=20 + k * 5)
    return a, b, c, d


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- the services --------------------------------------------------------------------------------


def test_the_overview_shows_each_worker_live_or_not_its_auctions_and_their_pending_bids(lots):
    a, b, c, d = lots
    services.auction_cancel(auction_id=b.pk)  # a final auction drops out of the overview

    overview = operations.bid_workers_overview()

    by_name = {w.name: w for w in overview.workers}
    assert [w.name for w in overview.workers] == ["bids1@a", "bids2@a", "bids3@b"]  # live ones first
    assert [w.live for w in overview.workers] == [True, True, False]
    assert by_name["bids3@b"].silent_for >= 59
    assert [(x.auction_id, x.pending) for x in by_name["bids1@a"].auctions] == [(a.pk, 3)]
    assert by_name["bids1@a"].pending == 3
    assert by_name["bids2@a"].auctions == []
    assert [x.auction_id for x in by_name["bids3@b"].auctions] == [c.pk]
    # No live worker consumes the silent worker's auction, nor the one nobody was given yet.
    assert [x.auction_id for x in overview.unassigned] == [c.pk, d.pk]
    assert overview.live_names == ["bids1@a", "bids2@a"]


def test_moving_an_auction_gives_it_to_that_worker_and_pins_it_there(lots, sent):
    a, b, *_ = lots

    moved = operations.auction_move(auction_id=a.pk, worker="bids2@a")
    stays = operations.auction_move(auction_id=b.pk, worker="bids2@a")

    assert (moved.previous, moved.worker) == ("bids1@a", "bids2@a")
    assert (stays.previous, stays.worker) == ("bids2@a", "bids2@a")
    assert assignment.owner(a.pk) == "bids2@a"
    assert assignment.assigned_auctions("bids2@a") == {a.pk, b.pk}
    assert assignment.assigned_auctions("bids1@a") == set()
    assert assignment.pinned() == {a.pk: "bids2@a", b.pk: "bids2@a"}
    assert ("add_consumer", auction_queue(a.pk)) in sent  # told at once, not only at its next sync
    # Two on bids2, none on bids1: rebalancing would move one, but both are pinned.
    assert assignment.reconcile([a.pk, b.pk])["rebalance"] == 0
    assert assignment.assigned_auctions("bids2@a") == {a.pk, b.pk}


@pytest.mark.parametrize("worker", ["bids3@b", "nobody@nowhere"])
def test_an_auction_cannot_be_moved_to_a_worker_that_is_not_live(lots, worker):
    a, *_ = lots

    with pytest.raises(operations.OperationError, match="not live"):
        operations.auction_move(auction_id=a.pk, worker=worker)
    assert assignment.owner(a.pk) == "bids1@a"


def test_a_final_or_missing_auction_cannot_be_moved_or_rung(lots):
    a, *_ = lots
    services.auction_cancel(auction_id=a.pk)

    for call in (lambda pk: operations.auction_move(auction_id=pk, worker="bids2@a"),
                 lambda pk: operations.auction_ring(auction_id=pk)):
        with pytest.raises(operations.OperationError, match="cancelled"):
            call(a.pk)
        with pytest.raises(operations.OperationError, match="does not exist"):
            call(10**9)


def test_ringing_forces_a_doorbell_even_when_one_is_already_on_its_way(lots, sent):
    a, *_ = lots
    doorbell.ring(a.pk)  # an ordinary ring: marks the auction as rung
    doorbell.ring(a.pk)  # so this one sends nothing
    assert _doorbells(sent, a.pk) == 1

    rung = operations.auction_ring(auction_id=a.pk)

    assert _doorbells(sent, a.pk) == 2
    assert (rung.pending, rung.consumer) == (3, "bids1@a")


def test_ringing_an_auction_no_live_worker_consumes_says_so(lots, sent):
    *_, c, d = lots

    assert operations.auction_ring(auction_id=c.pk).consumer is None
    assert operations.auction_ring(auction_id=d.pk).consumer is None
    assert _doorbells(sent, c.pk) == 1 and _doorbells(sent, d.pk) == 1


# --- the admin page -------------------------------------------------------------------------------


def test_the_admin_index_links_the_bid_workers_page(admin_client, own_redis):
    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert f'href="{PAGE}"' in response.text


def test_staff_see_each_worker_its_heartbeat_auctions_and_pending_bids(admin_client, lots):
    a, b, c, d = lots

    response = admin_client.get(PAGE)

    assert response.status_code == 200
    text = response.text
    assert "bids1@a: live" in text and "bids3@b: not live" in text
    assert "last heartbeat" in text
    assert f"#{a.pk} Vase" in text and f"#{d.pk} Rug" in text
    assert "3 pending bids" in text
    assert reverse("admin:auctions_auction_change", args=[a.pk]) in text
    assert 'name="csrfmiddlewaretoken"' in text
    assert '<option value="bids2@a">' in text and '<option value="bids3@b">' not in text  # live targets only


def test_staff_move_an_auction_from_the_page(admin_client, lots, sent):
    a, *_ = lots

    response = admin_client.post(PAGE, {"op": "move", "auction": a.pk, "worker": "bids2@a"}, follow=True)

    assert response.redirect_chain == [(PAGE, 302)]
    assert assignment.owner(a.pk) == "bids2@a"
    assert any("moved from bids1@a to bids2@a" in m for m in _messages(response))


def test_staff_ring_an_auction_from_the_page(admin_client, lots, sent):
    a, *_ = lots

    response = admin_client.post(PAGE, {"op": "ring", "auction": a.pk}, follow=True)

    assert response.status_code == 200
    assert _doorbells(sent, a.pk) == 1
    assert any("bids1@a decides its 3 pending bids now" in m for m in _messages(response))


@pytest.mark.parametrize("data, says", [
    ({"op": "move", "auction": "{a}", "worker": "bids3@b"}, "not live"),  # the worker died meanwhile
    ({"op": "move", "auction": "{a}", "worker": "gone@x"}, "not live"),  # or vanished
    ({"op": "move", "auction": "999999999", "worker": "bids2@a"}, "does not exist"),
    ({"op": "ring", "auction": "999999999"}, "does not exist"),
    ({"op": "ring", "auction": "abc"}, "Nothing done"),
    ({"op": "move", "auction": "{a}"}, "Choose the bid worker"),
    ({"op": "explode", "auction": "{a}"}, "Nothing done"),
    ({}, "Nothing done"),
])
def test_a_refused_operation_is_a_message_not_a_500(admin_client, lots, data, says):
    a, *_ = lots
    data = {k: v.format(a=a.pk) for k, v in data.items()}

    response = admin_client.post(PAGE, data, follow=True)

    assert response.status_code == 200
    assert any(says in m for m in _messages(response)), _messages(response)
    assert assignment.owner(a.pk) == "bids1@a"


def test_the_page_says_so_when_redis_is_down(admin_client, own_redis, monkeypatch):
    def down(**_kwargs):
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(operations, "bid_workers_overview", down)

    response = admin_client.get(PAGE)

    assert response.status_code == 200
    assert "Redis is unreachable" in response.text


def test_a_user_who_is_not_staff_is_refused(client, make_user, lots):
    a, *_ = lots
    make_user("mallory")
    client.login(username="mallory", password="correct-horse-42")

    assert client.get(PAGE).status_code == 302  # to the admin's login
    response = client.post(PAGE, {"op": "move", "auction": a.pk, "worker": "bids2@a"})

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert assignment.owner(a.pk) == "bids1@a"


def test_anonymous_visitors_are_sent_to_the_login(client, own_redis):
    response = client.get(PAGE)

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_the_permission_to_change_auctions_may_look_but_not_act(client, make_user, lots):
    a, *_ = lots
    viewer = make_user("viewer", staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_auction"))
    client.login(username="viewer", password="correct-horse-42")

    page = client.get(PAGE)
    response = client.post(PAGE, {"op": "move", "auction": a.pk, "worker": "bids2@a"}, follow=True)

    assert page.status_code == 200 and "bids1@a: live" in page.text
    assert 'value="Move"' not in page.text
    assert any("not move or ring" in m for m in _messages(response))
    assert assignment.owner(a.pk) == "bids1@a"


def test_a_post_without_the_csrf_token_is_refused(make_user, lots):
    a, *_ = lots
    make_user("root", staff=True).user_permissions.add(Permission.objects.get(codename="change_auction"))
    client = Client(enforce_csrf_checks=True)
    client.login(username="root", password="correct-horse-42")

    response = client.post(PAGE, {"op": "move", "auction": a.pk, "worker": "bids2@a"})

    assert response.status_code == 403
    assert assignment.owner(a.pk) == "bids1@a"

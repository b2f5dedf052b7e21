"""REST API: auctions and bids, against CONTRACT.md's table and its check order.

No Celery worker here: a bid the API accepted is decided by calling
auctions.services.bids_decide_pending directly, as the bid worker would."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from auctions import services
from auctions.api import AuctionOut, BidOut, EventOut
from auctions.models import Auction, AuctionEvent, Bid
from core import clock
from core.timefmt import iso
from tests.api_client import assert_error, bearer, post

pytestmark = pytest.mark.django_db

AUCTION_FIELDS = {
    "id",
    "title",
    "description",
    "status",
    "seller",
    "starts_at",
    "ends_at",
    "starting_price",
    "min_increment",
    "buy_now_price",
    "reserve_met",
    "extend_window_s",
    "extend_by_s",
    "current_price",
    "leader",
    "min_next_bid",
    "bid_count",
    "seq",
    "winner",
    "final_price",
    "server_time",
    "my_max",
    "is_leader",
}
BID_FIELDS = {
    "bid_id",
    "client_bid_id",
    "auction_id",
    "bidder",
    "amount",
    "max_amount",
    "position",
    "status",
    "reason",
    "seq",
    "created_at",
    "decided_at",
}


def bid(client, auction, user, **body):
    return post(client, f"/api/auctions/{auction.pk}/bids", body, **bearer(user))


def new_auction_body(**overrides):
    now = clock.now()
    body = {
        "title": "A clock",
        "description": "It ticks.",
        "starts_at": iso(now + timedelta(minutes=5)),
        "ends_at": iso(now + timedelta(minutes=65)),
        "starting_price": 100,
    }
    body.update(overrides)
    return body


@pytest.fixture
def staff(make_user):
    return make_user("root", staff=True)


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


# --- reading auctions ----------------------------------------------------------------------


def test_anyone_reads_an_auction_in_the_contract_shape(client, make_auction):
    auction = make_auction(title="Vase", starting_price=50, reserve_price=500)
    response = client.get(f"/api/auctions/{auction.pk}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == AUCTION_FIELDS  # no reserve_price for anonymous callers
    AuctionOut.model_validate(body)
    assert body["status"] == "live"
    assert body["starting_price"] == 50 and body["min_next_bid"] == 50
    assert body["current_price"] is None and body["leader"] is None
    assert body["reserve_met"] is False
    assert body["my_max"] is None and body["is_leader"] is False
    assert body["ends_at"].endswith("Z") and len(body["ends_at"]) == len("2026-01-01T00:00:00.000Z")


def test_a_user_does_not_see_the_reserve_but_staff_does(client, make_auction, alice, staff):
    auction = make_auction(reserve_price=500)
    assert "reserve_price" not in client.get(f"/api/auctions/{auction.pk}", **bearer(alice)).json()
    assert client.get(f"/api/auctions/{auction.pk}", **bearer(staff)).json()["reserve_price"] == 500


@pytest.mark.parametrize(
    "path",
    [
        "/api/auctions/999999",
        "/api/auctions/0",
        "/api/auctions/99999999999999999999999",
        "/api/auctions/abc",
        "/api/auctions/-1",
    ],
)
def test_an_unknown_or_malformed_auction_id_is_a_json_404(client, path):
    assert_error(client.get(path), 404, "not_found")


def test_auctions_list_filters_by_status(client, make_auction):
    live = make_auction()
    scheduled = make_auction(starts_in=600)
    response = client.get("/api/auctions?status=live")
    assert response.status_code == 200
    assert [a["id"] for a in response.json()["results"]] == [live.pk]
    assert {a["id"] for a in client.get("/api/auctions").json()["results"]} == {live.pk, scheduled.pk}
    assert [a["id"] for a in client.get("/api/auctions?status=scheduled").json()["results"]] == [scheduled.pk]


def test_auctions_list_refuses_an_unknown_status(client):
    error = assert_error(client.get("/api/auctions?status=sold"), 400, "invalid_field")
    assert error["details"] == {"field": "status"}


# --- creating and cancelling ---------------------------------------------------------------


def test_staff_creates_an_auction(client, staff, alice):
    body = new_auction_body(
        min_increment=5,
        reserve_price=300,
        buy_now_price=900,
        seller="alice",
        starts_at="2030-01-01T12:00:00+02:00",
        ends_at="2030-01-01T13:00:00Z",
    )
    response = post(client, "/api/auctions", body, **bearer(staff))
    assert response.status_code == 201, response.content
    created = response.json()
    assert set(created) == AUCTION_FIELDS | {"reserve_price"}
    assert created["status"] == "scheduled"
    assert created["starts_at"] == "2030-01-01T10:00:00.000Z"
    assert created["ends_at"] == "2030-01-01T13:00:00.000Z"
    assert (created["seller"], created["min_increment"], created["reserve_price"], created["buy_now_price"]) == (
        "alice",
        5,
        300,
        900,
    )
    assert (created["extend_window_s"], created["extend_by_s"]) == (30, 30)
    assert Auction.objects.filter(pk=created["id"]).exists()


def test_an_auction_whose_start_has_passed_is_live_at_once(client, staff):
    body = new_auction_body(starts_at=iso(clock.now() - timedelta(minutes=1)))
    created = post(client, "/api/auctions", body, **bearer(staff)).json()
    assert created["status"] == "live"
    events = client.get(f"/api/auctions/{created['id']}/events").json()["events"]
    assert [e["type"] for e in events] == ["auction.started"]


@pytest.mark.parametrize("field", ["starts_at", "ends_at"])
def test_a_naive_time_is_400(client, staff, field):
    body = new_auction_body(**{field: "2030-01-01T12:00:00"})
    error = assert_error(post(client, "/api/auctions", body, **bearer(staff)), 400, "invalid_field")
    assert error["details"]["field"] == field


@pytest.mark.parametrize(
    "value",
    ["next tuesday", 1893456000, None, "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59Z", "2030-02-30T00:00Z"],
)
def test_a_time_that_is_not_an_iso_string_is_400(client, staff, value):
    assert_error(post(client, "/api/auctions", new_auction_body(ends_at=value), **bearer(staff)), 400, "invalid_field")


@pytest.mark.parametrize("field", ["starting_price", "min_increment", "reserve_price", "buy_now_price"])
@pytest.mark.parametrize("value", [100.0, 99.5, True, "100", 0, -1, 10**12 + 1])
def test_auction_amounts_must_be_json_integers_in_range(client, staff, field, value):
    error = assert_error(
        post(client, "/api/auctions", new_auction_body(**{field: value}), **bearer(staff)), 400, "invalid_field"
    )
    assert error["details"]["field"] == field


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"ends_at": "2030-01-01T11:00:00Z", "starts_at": "2030-01-01T12:00:00Z"}, "ends_at"),
        ({"starts_at": "2020-01-01T11:00:00Z", "ends_at": "2020-01-01T12:00:00Z"}, "ends_at"),
        ({"buy_now_price": 50}, "buy_now_price"),
        ({"reserve_price": 500, "buy_now_price": 400}, "buy_now_price"),
        ({"seller": "ghost"}, "seller"),
        ({"title": ""}, "title"),
        ({"extend_window_s": -1}, "extend_window_s"),
        ({"extend_by_s": 1.5}, "extend_by_s"),
    ],
)
def test_nonsense_auctions_are_refused_with_400(client, staff, overrides, field):
    error = assert_error(
        post(client, "/api/auctions", new_auction_body(**overrides), **bearer(staff)), 400, "invalid_field"
    )
    assert error["details"]["field"] == field
    assert not Auction.objects.exists()


def test_creating_an_auction_without_a_body_is_400_never_422(client, staff):
    assert_error(client.post("/api/auctions", **bearer(staff)), 400, "invalid_request")
    assert_error(post(client, "/api/auctions", {}, **bearer(staff)), 400, "invalid_field")
    assert_error(post(client, "/api/auctions", raw="[1, 2", **bearer(staff)), 400, "invalid_request")
    response = post(client, "/api/auctions", raw="[1, 2]", **bearer(staff))
    assert response.status_code == 400


def test_a_non_staff_user_creating_an_auction_is_403_even_with_an_invalid_body(client, alice):
    assert_error(post(client, "/api/auctions", {"starting_price": 1.5}, **bearer(alice)), 403, "forbidden")
    assert_error(post(client, "/api/auctions", raw="not json", **bearer(alice)), 403, "forbidden")
    assert_error(post(client, "/api/auctions", new_auction_body(), **bearer(alice)), 403, "forbidden")


def test_creating_an_auction_anonymously_is_401(client):
    assert_error(post(client, "/api/auctions", new_auction_body()), 401, "not_authenticated")


def test_staff_cancels_an_auction_and_releases_the_leaders_hold(client, staff, alice, make_auction):
    auction = make_auction()
    bid(client, auction, alice, amount=10, max_amount=200)
    services.bids_decide_pending(auction_id=auction.pk)
    assert client.get("/api/me", **bearer(alice)).json()["held"] == 200
    response = post(client, f"/api/auctions/{auction.pk}/cancel", **bearer(staff))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert client.get("/api/me", **bearer(alice)).json()["held"] == 0
    events = client.get(f"/api/auctions/{auction.pk}/events").json()["events"]
    assert events[-1]["type"] == "auction.cancelled" and events[-1]["data"] == {}


def test_cancelling_twice_is_409(client, staff, make_auction):
    auction = make_auction()
    assert post(client, f"/api/auctions/{auction.pk}/cancel", **bearer(staff)).status_code == 200
    assert post(client, f"/api/auctions/{auction.pk}/cancel", **bearer(staff)).status_code == 409


def test_cancelling_an_ended_auction_is_409(client, staff, make_auction):
    auction = make_auction()
    services.auction_reschedule_end(auction_id=auction.pk, ends_at=clock.now())
    assert post(client, f"/api/auctions/{auction.pk}/cancel", **bearer(staff)).status_code == 409


def test_cancelling_an_unknown_auction_is_404(client, staff):
    assert_error(post(client, "/api/auctions/424242/cancel", **bearer(staff)), 404, "not_found")


def test_cancelling_is_for_staff_only(client, alice, make_auction):
    auction = make_auction()
    assert_error(post(client, f"/api/auctions/{auction.pk}/cancel", **bearer(alice)), 403, "forbidden")
    assert_error(post(client, f"/api/auctions/{auction.pk}/cancel"), 401, "not_authenticated")
    assert Auction.objects.get(pk=auction.pk).status == "live"


# --- submitting bids -----------------------------------------------------------------------


def test_a_bid_is_queued_then_decided_and_shows_everywhere(client, alice, make_auction):
    auction = make_auction(starting_price=10, min_increment=5)
    response = bid(client, auction, alice, amount=20, max_amount=100, client_bid_id="c-1")
    assert response.status_code == 202, response.content
    queued = response.json()
    assert set(queued) == BID_FIELDS
    BidOut.model_validate(queued)
    assert (queued["status"], queued["position"], queued["amount"], queued["max_amount"]) == ("queued", 1, 20, 100)
    assert queued["bidder"] == "alice" and queued["client_bid_id"] == "c-1" and queued["auction_id"] == auction.pk
    assert queued["seq"] is None and queued["reason"] is None and queued["decided_at"] is None

    assert services.bids_decide_pending(auction_id=auction.pk) == 1

    decided = client.get(f"/api/bids/{queued['bid_id']}", **bearer(alice)).json()
    assert decided["status"] == "accepted" and decided["seq"] is not None and decided["decided_at"]
    view = client.get(f"/api/auctions/{auction.pk}", **bearer(alice)).json()
    assert (view["current_price"], view["leader"], view["bid_count"], view["min_next_bid"]) == (20, "alice", 1, 25)
    assert (view["my_max"], view["is_leader"]) == (100, True)
    anonymous = client.get(f"/api/auctions/{auction.pk}").json()
    assert (anonymous["my_max"], anonymous["is_leader"]) == (None, False)

    events = client.get(f"/api/auctions/{auction.pk}/events?after=0").json()["events"]
    for event in events:
        EventOut.model_validate(event)
    accepted = [e for e in events if e["type"] == "bid.accepted"]
    assert len(accepted) == 1
    assert accepted[0]["seq"] == decided["seq"]
    assert accepted[0]["data"]["bid_id"] == queued["bid_id"]
    assert accepted[0]["data"]["bidder"] == "alice" and accepted[0]["data"]["amount"] == 20
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    assert client.get(f"/api/auctions/{auction.pk}/leaderboard").json() == {
        "entries": [{"rank": 1, "username": "alice", "amount": 20}]
    }


def test_a_proxy_answers_a_challenger_as_the_contract_example_says(client, alice, bob, make_user, make_auction):
    carol = make_user("carol")
    auction = make_auction(starting_price=10, min_increment=5)
    bid(client, auction, alice, amount=20, max_amount=100)
    bid(client, auction, bob, amount=50)
    services.bids_decide_pending(auction_id=auction.pk)
    view = client.get(f"/api/auctions/{auction.pk}").json()
    assert (view["current_price"], view["leader"]) == (55, "alice")
    bid(client, auction, carol, amount=300)
    services.bids_decide_pending(auction_id=auction.pk)
    view = client.get(f"/api/auctions/{auction.pk}").json()
    assert (view["current_price"], view["leader"]) == (300, "carol")
    entries = client.get(f"/api/auctions/{auction.pk}/leaderboard").json()["entries"]
    assert [(e["rank"], e["username"], e["amount"]) for e in entries] == [
        (1, "carol", 300),
        (2, "alice", 55),
        (3, "bob", 50),
    ]


def test_someone_elses_bid_shows_no_max_and_is_404_by_id(client, alice, bob, make_auction):
    auction = make_auction()
    bid_id = bid(client, auction, alice, amount=10, max_amount=90).json()["bid_id"]
    assert_error(client.get(f"/api/bids/{bid_id}", **bearer(bob)), 404, "not_found")
    assert client.get(f"/api/bids/{bid_id}", **bearer(alice)).json()["max_amount"] == 90


@pytest.mark.parametrize("path", ["/api/bids/987654", "/api/bids/99999999999999999999999"])
def test_an_unknown_bid_is_404(client, alice, path):
    assert_error(client.get(path, **bearer(alice)), 404, "not_found")


def test_reading_a_bid_needs_a_token(client, alice, make_auction):
    bid_id = bid(client, make_auction(), alice, amount=10).json()["bid_id"]
    assert_error(client.get(f"/api/bids/{bid_id}"), 401, "not_authenticated")


@pytest.mark.parametrize("header", [None, "Bearer garbage", "Token abc"])
def test_bidding_without_a_valid_token_is_401(client, make_auction, header):
    auction = make_auction()
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    assert_error(post(client, f"/api/auctions/{auction.pk}/bids", {"amount": 10}, **headers), 401, "not_authenticated")
    assert not Bid.objects.exists()


def test_bidding_with_an_expired_token_is_401(client, alice, make_auction, monkeypatch, settings):
    auction = make_auction()
    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now - timedelta(seconds=settings.ACCESS_TOKEN_TTL + 5))
    headers = bearer(alice)
    monkeypatch.setattr(clock, "now", lambda: real_now)
    assert_error(post(client, f"/api/auctions/{auction.pk}/bids", {"amount": 10}, **headers), 401, "not_authenticated")


def test_bidding_on_an_unknown_auction_is_404_even_with_a_bad_body(client, alice):
    assert_error(post(client, "/api/auctions/4242/bids", {"amount": 10}, **bearer(alice)), 404, "not_found")
    assert_error(post(client, "/api/auctions/4242/bids", {"amount": 1.5}, **bearer(alice)), 404, "not_found")
    assert_error(post(client, "/api/auctions/4242/bids", raw="{oops", **bearer(alice)), 404, "not_found")


def test_an_anonymous_bid_on_an_unknown_auction_is_401(client):
    assert_error(post(client, "/api/auctions/4242/bids", {"amount": 10}), 401, "not_authenticated")


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 10.0},
        {"amount": 10.5},
        {"amount": True},
        {"amount": False},
        {"amount": "10"},
        {"amount": None},
        {},
        {"amount": 0},
        {"amount": -5},
        {"amount": 10**12 + 1},
        {"amount": [10]},
        {"amount": 10, "max_amount": 20.0},
        {"amount": 10, "max_amount": True},
        {"amount": 10, "max_amount": "99"},
        {"amount": 10, "max_amount": 10**12 + 1},
    ],
)
def test_an_amount_that_is_not_a_json_integer_in_range_is_400(client, alice, make_auction, body):
    auction = make_auction()
    assert_error(post(client, f"/api/auctions/{auction.pk}/bids", body, **bearer(alice)), 400, "invalid_amount")
    assert not Bid.objects.exists()


def test_a_max_below_the_amount_is_400(client, alice, make_auction):
    auction = make_auction()
    error = assert_error(bid(client, auction, alice, amount=50, max_amount=40), 400, "invalid_amount")
    assert error["details"] == {"field": "max_amount"}


def test_the_largest_amount_is_accepted(client, alice, make_auction):
    auction = make_auction()
    assert bid(client, auction, alice, amount=10**12).status_code == 202


@pytest.mark.parametrize("raw", ["{oops", "[1, 2]", '"amount"', "", "null"])
def test_a_bid_body_that_is_not_a_json_object_is_400(client, alice, make_auction, raw):
    auction = make_auction()
    assert_error(post(client, f"/api/auctions/{auction.pk}/bids", raw=raw, **bearer(alice)), 400, "invalid_request")


@pytest.mark.parametrize("client_bid_id", ["x" * 65, "", 17])
def test_a_bad_client_bid_id_is_400(client, alice, make_auction, client_bid_id):
    auction = make_auction()
    response = bid(client, auction, alice, amount=10, client_bid_id=client_bid_id)
    assert response.status_code == 400
    assert not Bid.objects.exists()


def test_a_seller_cannot_bid_on_their_own_auction(client, alice, make_auction):
    auction = make_auction(seller="alice")
    assert_error(bid(client, auction, alice, amount=10), 403, "seller_cannot_bid")
    assert not Bid.objects.exists()


def test_bidding_on_a_scheduled_auction_is_409_not_live(client, alice, make_auction):
    auction = make_auction(starts_in=600)
    assert_error(bid(client, auction, alice, amount=10), 409, "auction_not_live")


def test_bidding_on_a_cancelled_auction_is_409_not_live(client, alice, make_auction):
    auction = make_auction()
    services.auction_cancel(auction_id=auction.pk)
    assert_error(bid(client, auction, alice, amount=10), 409, "auction_not_live")


def test_bidding_on_an_ended_auction_is_409_ended(client, alice, make_auction):
    auction = make_auction()
    services.auction_reschedule_end(auction_id=auction.pk, ends_at=clock.now())
    assert Auction.objects.get(pk=auction.pk).status == "ended"
    assert_error(bid(client, auction, alice, amount=10), 409, "auction_ended")


def test_bidding_at_or_after_ends_at_is_409_ended_even_before_the_end_runs(client, alice, make_auction):
    auction = make_auction(starts_in=-10, lasts=60)
    # Live, but its end has passed and the end timer has not run yet.
    Auction.objects.filter(pk=auction.pk).update(ends_at=clock.now() - timedelta(seconds=1))
    assert Auction.objects.get(pk=auction.pk).status == "live"
    assert_error(bid(client, auction, alice, amount=10), 409, "auction_ended")
    assert not Bid.objects.exists()


# --- the order of the checks ---------------------------------------------------------------


def test_an_invalid_amount_on_a_scheduled_auction_is_400_not_409(client, alice, make_auction):
    auction = make_auction(starts_in=600)
    assert_error(bid(client, auction, alice, amount=1.5), 400, "invalid_amount")


def test_a_seller_with_an_invalid_amount_gets_400_not_403(client, alice, make_auction):
    auction = make_auction(seller="alice")
    assert_error(bid(client, auction, alice, amount=0), 400, "invalid_amount")


def test_a_seller_on_a_scheduled_auction_gets_403_not_409(client, alice, make_auction):
    auction = make_auction(seller="alice", starts_in=600)
    assert_error(bid(client, auction, alice, amount=10), 403, "seller_cannot_bid")


def test_a_bid_on_an_ended_auction_is_409_even_when_rate_limited(client, alice, make_auction, settings):
    settings.BID_RATE_PER_SECOND = 0.001
    settings.BID_RATE_BURST = 1
    live = make_auction()
    assert bid(client, live, alice, amount=10).status_code == 202
    assert_error(bid(client, live, alice, amount=11), 429, "rate_limited")
    scheduled = make_auction(starts_in=600)
    assert_error(bid(client, scheduled, alice, amount=10), 409, "auction_not_live")


# --- idempotency and rate limiting ---------------------------------------------------------


def test_resending_a_client_bid_id_answers_200_with_the_original_bid(client, alice, make_auction):
    auction = make_auction()
    first = bid(client, auction, alice, amount=10, client_bid_id="once")
    assert first.status_code == 202
    again = bid(client, auction, alice, amount=99, client_bid_id="once")
    assert again.status_code == 200
    assert again.json()["bid_id"] == first.json()["bid_id"]
    assert again.json()["amount"] == 10
    assert Bid.objects.count() == 1

    services.bids_decide_pending(auction_id=auction.pk)
    after_decision = bid(client, auction, alice, amount=10, client_bid_id="once")
    assert after_decision.status_code == 200
    assert after_decision.json()["status"] == "accepted"  # as it stands now
    assert Bid.objects.count() == 1


def test_the_same_client_bid_id_from_another_user_is_a_new_bid(client, alice, bob, make_auction):
    auction = make_auction()
    assert bid(client, auction, alice, amount=10, client_bid_id="same").status_code == 202
    assert bid(client, auction, bob, amount=11, client_bid_id="same").status_code == 202
    assert Bid.objects.count() == 2


def test_too_many_bids_are_429_with_retry_after(client, alice, make_auction, settings):
    settings.BID_RATE_PER_SECOND = 0.5
    settings.BID_RATE_BURST = 3
    auction = make_auction()
    for amount in (10, 11, 12):
        assert bid(client, auction, alice, amount=amount).status_code == 202
    response = bid(client, auction, alice, amount=13)
    error = assert_error(response, 429, "rate_limited")
    retry_after = int(response["Retry-After"])
    assert retry_after >= 1
    assert error["details"]["retry_after"] == retry_after
    assert Bid.objects.count() == 3


def test_the_rate_limit_is_per_user(client, alice, bob, make_auction, settings):
    settings.BID_RATE_PER_SECOND = 0.001
    settings.BID_RATE_BURST = 1
    auction = make_auction()
    assert bid(client, auction, alice, amount=10).status_code == 202
    assert bid(client, auction, alice, amount=11).status_code == 429
    assert bid(client, auction, bob, amount=12).status_code == 202


def test_refused_bids_do_not_spend_the_rate_limit(client, alice, make_auction, settings):
    settings.BID_RATE_PER_SECOND = 0.001
    settings.BID_RATE_BURST = 1
    auction = make_auction()
    for _ in range(5):
        assert bid(client, auction, alice, amount=1.5).status_code == 400
    assert bid(client, auction, alice, amount=10).status_code == 202


# --- events and leaderboard ----------------------------------------------------------------


def test_events_page_by_after_and_limit(client, alice, bob, make_auction):
    auction = make_auction(starting_price=10)
    for user, amount in ((alice, 10), (bob, 20), (alice, 30)):
        bid(client, auction, user, amount=amount)
    services.bids_decide_pending(auction_id=auction.pk)
    total = AuctionEvent.objects.filter(auction_id=auction.pk).count()
    assert total == 4  # started + three accepted
    page = client.get(f"/api/auctions/{auction.pk}/events?after=1&limit=2").json()["events"]
    assert [e["seq"] for e in page] == [2, 3]
    assert client.get(f"/api/auctions/{auction.pk}/events?after={total}").json() == {"events": []}
    default = client.get(f"/api/auctions/{auction.pk}/events").json()["events"]
    assert [e["seq"] for e in default] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "after=-1", "after=abc", "limit=ten", "after=99999999999999999999999"]
)
def test_bad_event_parameters_are_400_never_422(client, make_auction, query):
    auction = make_auction()
    assert_error(client.get(f"/api/auctions/{auction.pk}/events?{query}"), 400, "invalid_field")


def test_events_and_leaderboard_of_an_unknown_auction_are_404(client):
    assert_error(client.get("/api/auctions/4242/events"), 404, "not_found")
    assert_error(client.get("/api/auctions/4242/leaderboard"), 404, "not_found")


def test_an_empty_leaderboard(client, make_auction):
    assert client.get(f"/api/auctions/{make_auction().pk}/leaderboard").json() == {"entries": []}


def test_max_amounts_are_public_once_the_auction_is_over(client, alice, bob, make_auction):
    auction = make_auction()
    bid(client, auction, alice, amount=10, max_amount=70)
    services.bids_decide_pending(auction_id=auction.pk)
    services.auction_reschedule_end(auction_id=auction.pk, ends_at=clock.now())
    view = client.get(f"/api/auctions/{auction.pk}", **bearer(bob)).json()
    assert (view["status"], view["winner"], view["final_price"]) == ("ended", "alice", 10)
    mine = client.get("/api/me/bids", **bearer(alice)).json()["results"]
    assert mine[0]["max_amount"] == 70


def test_an_oversized_bid_body_is_400(client, alice, make_auction, settings):
    auction = make_auction()
    raw = json.dumps({"amount": 10, "padding": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2621440)})
    assert_error(post(client, f"/api/auctions/{auction.pk}/bids", raw=raw, **bearer(alice)), 400, "invalid_request")
    assert not Bid.objects.exists()


def test_public_endpoints_document_that_the_token_is_optional(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    assert sorted(map(str, paths["/api/auctions/{auction_id}"]["get"]["security"])) == ["{'Bearer': []}", "{}"]
    assert paths["/api/auctions/{auction_id}/bids"]["post"]["security"] == [{"Bearer": []}]


def test_nul_characters_are_refused_as_bad_input(client, staff, alice, make_auction):
    error = assert_error(
        post(client, "/api/auctions", new_auction_body(title="a\x00b"), **bearer(staff)), 400, "invalid_field"
    )
    assert error["details"]["field"] == "title"
    auction = make_auction()
    assert_error(bid(client, auction, alice, amount=10, client_bid_id="a\x00"), 400, "invalid_field")
    assert_error(post(client, "/api/auth/token", {"username": "a\x00", "password": "x"}), 400, "invalid_field")
    assert_error(
        post(client, "/api/wallet/grants", {"username": "a\x00", "amount": 1}, **bearer(staff)), 400, "invalid_field"
    )


def test_lone_surrogates_are_refused_as_bad_input_not_a_500(client, staff, alice, make_auction):
    """JSON's "\\ud800" decodes to a lone surrogate, which no database driver (nor the password
    hasher) can encode: it is bad input (400), never a crash."""
    assert_error(post(client, "/api/auth/register", {"username": "carol", "password": "long-enough-\ud800"}), 400,
                 "invalid_field")
    assert_error(post(client, "/api/auth/token", {"username": "alice", "password": "x\udfff"}), 400, "invalid_field")
    body = new_auction_body(description="\ud800")
    assert_error(post(client, "/api/auctions", body, **bearer(staff)), 400, "invalid_field")
    assert_error(post(client, "/api/wallet/grants", {"username": "alice", "amount": 1, "memo": "\ud800"},
                      **bearer(staff)), 400, "invalid_field")
    auction = make_auction()
    error = assert_error(bid(client, auction, alice, amount=10, client_bid_id="a\ud800"), 400, "invalid_field")
    assert error["details"]["field"] == "client_bid_id"
    assert not Bid.objects.exists()

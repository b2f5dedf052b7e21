"""REST API: accounts, tokens, /me, the statement, grants, health and the API's own edges
(error shape, OpenAPI, docs)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from auctions import services
from core import clock
from tests.api_client import assert_error, bearer, post

pytestmark = pytest.mark.django_db


# --- register and token --------------------------------------------------------------------


def test_register_creates_a_user_and_answers_201(client):
    response = post(client, "/api/auth/register", {"username": "alice", "password": "correct-horse-42"})
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "username": "alice"}
    assert isinstance(body["id"], int)


def test_register_with_a_taken_username_is_400(client, make_user):
    make_user("alice")
    response = post(client, "/api/auth/register", {"username": "alice", "password": "correct-horse-42"})
    assert_error(response, 400, "username_taken")


def test_register_with_a_weak_password_is_400(client):
    assert_error(post(client, "/api/auth/register", {"username": "alice", "password": "123"}), 400, "weak_password")


def test_register_without_a_password_is_400_never_422(client):
    error = assert_error(post(client, "/api/auth/register", {"username": "alice"}), 400, "invalid_field")
    assert error["details"]["field"] == "password"


def test_register_with_a_body_that_is_not_json_is_400(client):
    assert_error(post(client, "/api/auth/register", raw="{nope"), 400, "invalid_request")


def test_token_answers_an_access_token_for_the_right_password(client, make_user, settings):
    make_user("alice")
    response = post(client, "/api/auth/token", {"username": "alice", "password": "correct-horse-42"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.ACCESS_TOKEN_TTL
    me = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.status_code == 200 and me.json()["username"] == "alice"


@pytest.mark.parametrize("username, password", [("alice", "wrong-password"), ("nobody", "correct-horse-42")])
def test_token_with_wrong_credentials_is_401(client, make_user, username, password):
    make_user("alice")
    assert_error(
        post(client, "/api/auth/token", {"username": username, "password": password}), 401, "invalid_credentials"
    )


def test_token_for_an_inactive_user_is_401(client, make_user):
    user = make_user("alice")
    user.is_active = False
    user.save()
    response = post(client, "/api/auth/token", {"username": "alice", "password": "correct-horse-42"})
    assert response.status_code == 401


# --- authentication ------------------------------------------------------------------------


def test_me_without_a_token_is_401(client):
    response = client.get("/api/me")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer ", "Basic YWxpY2U6cHc=", "garbage"])
def test_me_with_a_bad_authorization_header_is_401(client, make_user, header):
    make_user("alice")
    assert_error(client.get("/api/me", HTTP_AUTHORIZATION=header), 401, "not_authenticated")


def test_me_with_an_expired_token_is_401(client, make_user, monkeypatch, settings):
    user = make_user("alice")
    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now - timedelta(seconds=settings.ACCESS_TOKEN_TTL + 60))
    headers = bearer(user)
    monkeypatch.setattr(clock, "now", lambda: real_now)
    assert_error(client.get("/api/me", **headers), 401, "not_authenticated")


def test_a_token_of_a_deactivated_user_is_401(client, make_user):
    user = make_user("alice")
    headers = bearer(user)
    user.is_active = False
    user.save()
    assert_error(client.get("/api/me", **headers), 401, "not_authenticated")


def test_a_bad_token_on_a_public_endpoint_is_401_not_anonymous(client):
    assert_error(client.get("/api/auctions", HTTP_AUTHORIZATION="Bearer garbage"), 401, "not_authenticated")


# --- me and the statement ------------------------------------------------------------------


def test_me_shows_the_callers_coins(client, make_user, settings):
    user = make_user("alice")
    response = client.get("/api/me", **bearer(user))
    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "username": "alice",
        "is_staff": False,
        "balance": settings.SIGNUP_BONUS,
        "held": 0,
        "available": settings.SIGNUP_BONUS,
    }


def test_me_shows_held_coins_of_a_leading_bid(client, make_user, make_auction, settings):
    alice = make_user("alice")
    auction = make_auction(starting_price=10)
    assert (
        post(client, f"/api/auctions/{auction.pk}/bids", {"amount": 20, "max_amount": 300}, **bearer(alice)).status_code
        == 202
    )
    services.bids_decide_pending(auction_id=auction.pk)
    body = client.get("/api/me", **bearer(alice)).json()
    assert (body["balance"], body["held"], body["available"]) == (
        settings.SIGNUP_BONUS,
        300,
        settings.SIGNUP_BONUS - 300,
    )


def test_ledger_shows_signed_amounts_and_balances_newest_first(client, make_user, make_auction, settings):
    staff = make_user("root", staff=True)
    seller = make_user("seller")
    buyer = make_user("buyer")
    bonus = settings.SIGNUP_BONUS
    assert (
        post(
            client, "/api/wallet/grants", {"username": "buyer", "amount": 500, "memo": "welcome"}, **bearer(staff)
        ).status_code
        == 201
    )
    auction = make_auction(seller="seller", starting_price=100)
    assert post(client, f"/api/auctions/{auction.pk}/bids", {"amount": 120}, **bearer(buyer)).status_code == 202
    services.bids_decide_pending(auction_id=auction.pk)
    services.auction_reschedule_end(auction_id=auction.pk, ends_at=clock.now())

    lines = client.get("/api/me/ledger", **bearer(buyer)).json()["results"]
    assert [(x["kind"], x["amount"], x["balance_after"], x["auction_id"]) for x in lines] == [
        ("settlement", -120, bonus + 500 - 120, auction.pk),
        ("grant", 500, bonus + 500, None),
        ("signup_bonus", bonus, bonus, None),
    ]
    assert lines[0]["id"] > lines[1]["id"] > lines[2]["id"]
    assert all(x["created_at"].endswith("Z") for x in lines)
    assert set(lines[0]) == {"id", "kind", "amount", "balance_after", "auction_id", "created_at"}

    seller_lines = client.get("/api/me/ledger", **bearer(seller)).json()["results"]
    assert [(x["kind"], x["amount"], x["balance_after"]) for x in seller_lines] == [
        ("settlement", 120, bonus + 120),
        ("signup_bonus", bonus, bonus),
    ]


def test_ledger_needs_a_token(client):
    assert_error(client.get("/api/me/ledger"), 401, "not_authenticated")


def test_my_bids_are_newest_first(client, make_user, make_auction):
    alice = make_user("alice")
    first, second = make_auction(), make_auction()
    post(client, f"/api/auctions/{first.pk}/bids", {"amount": 10}, **bearer(alice))
    post(client, f"/api/auctions/{second.pk}/bids", {"amount": 11, "max_amount": 50}, **bearer(alice))
    results = client.get("/api/me/bids", **bearer(alice)).json()["results"]
    assert [(b["auction_id"], b["amount"], b["max_amount"]) for b in results] == [
        (second.pk, 11, 50),
        (first.pk, 10, 10),
    ]


# --- grants --------------------------------------------------------------------------------


def test_staff_grant_credits_the_user(client, make_user, settings):
    staff = make_user("root", staff=True)
    make_user("alice")
    response = post(client, "/api/wallet/grants", {"username": "alice", "amount": 250}, **bearer(staff))
    assert response.status_code == 201
    body = response.json()
    assert body == {"transfer_id": body["transfer_id"], "username": "alice", "amount": 250}
    alice_token = post(client, "/api/auth/token", {"username": "alice", "password": "correct-horse-42"}).json()
    me = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {alice_token['access']}").json()
    assert me["balance"] == settings.SIGNUP_BONUS + 250


def test_grant_by_a_non_staff_user_is_403_before_the_body_is_read(client, make_user):
    alice = make_user("alice")
    assert_error(post(client, "/api/wallet/grants", raw="{broken", **bearer(alice)), 403, "forbidden")
    assert_error(post(client, "/api/wallet/grants", {"amount": 1.5}, **bearer(alice)), 403, "forbidden")


def test_grant_without_a_token_is_401(client):
    assert_error(post(client, "/api/wallet/grants", {"username": "alice", "amount": 5}), 401, "not_authenticated")


def test_grant_to_an_unknown_user_is_404(client, make_user):
    staff = make_user("root", staff=True)
    error = assert_error(
        post(client, "/api/wallet/grants", {"username": "ghost", "amount": 5}, **bearer(staff)), 404, "not_found"
    )
    assert error["details"] == {"field": "username"}


@pytest.mark.parametrize("amount", [1.0, 2.5, True, "5", 0, -3, 10**12 + 1, None])
def test_grant_amount_must_be_a_json_integer_in_range(client, make_user, amount):
    staff = make_user("root", staff=True)
    make_user("alice")
    error = assert_error(
        post(client, "/api/wallet/grants", {"username": "alice", "amount": amount}, **bearer(staff)),
        400,
        "invalid_field",
    )
    assert error["details"]["field"] == "amount"


# --- the API's edges -----------------------------------------------------------------------


def test_openapi_schema_parses_and_lists_every_path(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    paths = set(response.json()["paths"])
    assert {
        "/api/auth/register",
        "/api/auth/token",
        "/api/me",
        "/api/me/bids",
        "/api/me/ledger",
        "/api/auctions",
        "/api/auctions/{auction_id}",
        "/api/auctions/{auction_id}/cancel",
        "/api/auctions/{auction_id}/bids",
        "/api/auctions/{auction_id}/events",
        "/api/auctions/{auction_id}/leaderboard",
        "/api/bids/{bid_id}",
        "/api/wallet/grants",
        "/api/health",
    } <= paths
    bids = response.json()["paths"]["/api/auctions/{auction_id}/bids"]["post"]
    assert "amount" in bids["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_docs_page_is_served(client):
    assert client.get("/api/docs").status_code == 200


def test_an_unknown_api_path_is_a_json_404(client):
    assert_error(client.get("/api/no/such/thing"), 404, "not_found")


def test_a_wrong_method_is_a_json_405(client):
    assert_error(client.delete("/api/me"), 405, "method_not_allowed")


def test_a_crash_is_a_json_500_without_a_traceback(client, monkeypatch):
    from auctions import selectors

    def boom(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(selectors, "auction_list", boom)
    response = client.get("/api/auctions")
    assert_error(response, 500, "internal_error")
    assert b"secret internals" not in response.content and b"Traceback" not in response.content


# --- health --------------------------------------------------------------------------------


def test_health_is_503_when_no_bid_worker_has_heartbeated(client):
    response = client.get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["bid_workers"] != "ok"
    assert body["checks"]["scheduler"] != "ok"


def test_health_is_200_once_a_worker_heartbeats_and_beat_ticks(client):
    from tasks import assignment

    assignment.heartbeat("x")
    assignment.record_tick()
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "channel_layer": "ok", "bid_workers": "ok", "scheduler": "ok"},
    }


def test_health_fails_when_the_last_tick_is_stale(client):
    import time

    from tasks import assignment

    assignment.heartbeat("x")
    assignment.record_tick(now=time.time() - 30)
    response = client.get("/api/health")
    assert response.status_code == 503
    assert response.json()["checks"]["scheduler"].startswith("last tick")


def test_the_api_needs_no_csrf_token(make_user):
    from django.test import Client

    make_user("alice")
    strict = Client(enforce_csrf_checks=True)
    response = post(strict, "/api/auth/token", {"username": "alice", "password": "correct-horse-42"})
    assert response.status_code == 200

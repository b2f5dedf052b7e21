"""Security, as an auditor would check it (docs/security.md says what is enforced where):
access tokens refused in every bad shape over REST and WebSocket; staff-only routes and the
admin; CSRF on the pages; the sockets' Origin check; bid rate limits in Redis; password
hashing; production settings (`check --deploy`); and no credential in the logs.

Tokens that must be refused name a real, active user wherever they can, so that a server that
skipped the check in question would let them in and the test would fail."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import global_settings
from django.contrib.auth.hashers import check_password, identify_hasher
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from auctions import services
from auctions.models import Auction, Bid
from core import clock, tokens
from core.asgi import application
from core.models import Transfer, User
from tests.api_client import assert_error, bearer, post

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-42"


def run(coro):
    return asyncio.run(coro)


async def ws_connect(path: str, *, token: str | None = None, headers: list[tuple[bytes, bytes]] | None = None,
                     app=application) -> tuple[WebsocketCommunicator, bool]:
    comm = WebsocketCommunicator(app, path + (f"?token={token}" if token is not None else ""), headers=headers or [])
    connected, _ = await comm.connect(timeout=5)
    return comm, connected


async def ws_receive(comm: WebsocketCommunicator) -> dict[str, Any]:
    return json.loads(await comm.receive_from(timeout=5))


# --- 1. access tokens -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(header: dict[str, Any], claims: dict[str, Any], key: bytes | None, digest=hashlib.sha256) -> str:
    """A JWT built by hand, so the test controls every byte the library would not let it forge."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), digest).digest() if key is not None else b""
    return f"{signing_input}.{_b64(signature)}"


def _claims(user_id: int, **changes: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    claims: dict[str, Any] = {"sub": str(user_id), "iss": tokens.ISSUER, "iat": now, "exp": now + 600}
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _tampered(alice: User, bob: User) -> str:
    """Alice's genuine token with its claims changed to Bob's id, her signature kept."""
    header, _, signature = tokens.access_token_issue(user=alice)["access"].split(".")
    claims = _b64(json.dumps(_claims(bob.pk)).encode())
    return f"{header}.{claims}.{signature}"


def _inactive(alice: User, bob: User) -> str:
    token = tokens.access_token_issue(user=bob)["access"]
    User.objects.filter(pk=bob.pk).update(is_active=False)
    return token


HS256 = {"alg": "HS256", "typ": "JWT"}

# name -> a token (made from two real users) that must be refused everywhere.
BAD_TOKENS = {
    "forged with another key": lambda a, b: _sign(HS256, _claims(a.pk), b"not-gavels-key-" * 4),
    "forged with SECRET_KEY itself, not the derived key": lambda a, b: jwt.encode(
        _claims(a.pk), _secret_key_bytes(), algorithm="HS256"),
    "alg none, unsigned": lambda a, b: _sign({"alg": "none", "typ": "JWT"}, _claims(a.pk), None),
    "alg None spelled otherwise": lambda a, b: _sign({"alg": "None", "typ": "JWT"}, _claims(a.pk), None),
    "HS512 with the right key": lambda a, b: _sign({"alg": "HS512", "typ": "JWT"}, _claims(a.pk), tokens._key(),
                                                  hashlib.sha512),
    "RS256 header over an HMAC of the right key": lambda a, b: _sign({"alg": "RS256", "typ": "JWT"},
                                                                   _claims(a.pk), tokens._key()),
    "expired": lambda a, b: jwt.encode(_claims(a.pk, iat=int(clock.now().timestamp()) - 7200,
                                               exp=int(clock.now().timestamp()) - 60), tokens._key(), "HS256"),
    "claims tampered, signature kept": _tampered,
    "wrong issuer": lambda a, b: jwt.encode(_claims(a.pk, iss="someone-else"), tokens._key(), algorithm="HS256"),
    "no issuer": lambda a, b: jwt.encode(_claims(a.pk, iss=None), tokens._key(), algorithm="HS256"),
    "no exp": lambda a, b: jwt.encode(_claims(a.pk, exp=None), tokens._key(), algorithm="HS256"),
    "no sub": lambda a, b: jwt.encode(_claims(a.pk, sub=None), tokens._key(), algorithm="HS256"),
    "sub not a user id": lambda a, b: jwt.encode(_claims(a.pk, sub="alice"), tokens._key(), algorithm="HS256"),
    "garbage": lambda a, b: "garbage",
    "three dots of garbage": lambda a, b: "a.b.c",
    "oversized but validly signed": lambda a, b: jwt.encode(
        _claims(a.pk, pad="x" * 5000), tokens._key(), algorithm="HS256"),
    # Users are never deleted (ledger rows protect them); a genuine token naming an id that
    # no longer exists is exactly what the server would see.
    "of a deleted user": lambda a, b: tokens.access_token_issue(user=User(pk=b.pk + 1000, username="gone"))["access"],
    "of an inactive user": _inactive,
}


def _secret_key_bytes() -> bytes:
    from django.conf import settings

    return settings.SECRET_KEY.encode()


@pytest.fixture
def alice_bob(make_user):
    return make_user("alice"), make_user("bob")


@pytest.mark.django_db
def test_a_genuine_token_is_accepted_the_control_for_the_refusals_below(client, alice_bob):
    alice, _ = alice_bob
    token = tokens.access_token_issue(user=alice)["access"]
    response = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and response.json()["username"] == "alice"


@pytest.mark.django_db
@pytest.mark.parametrize("case", BAD_TOKENS)
def test_a_bad_token_is_refused_over_rest_with_the_contracts_401(client, alice_bob, case):
    token = BAD_TOKENS[case](*alice_bob)
    for path in ("/api/me", "/api/auctions"):  # a user endpoint, and one open to anyone
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert_error(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert_error(post(client, "/api/auctions/1/bids", {"amount": 10}, HTTP_AUTHORIZATION=f"Bearer {token}"),
                 401, "not_authenticated")


@pytest.mark.usefixtures("transactional_db")
@pytest.mark.parametrize("case", BAD_TOKENS)
def test_a_bad_token_is_refused_at_the_socket_handshake(make_auction, alice_bob, case):
    """Contract: a bad or expired token is refused at the handshake (HTTP 403 from the server:
    the consumer closes before accepting). The genuine token of the same user gets in."""
    alice, bob = alice_bob
    auction = make_auction()
    token = BAD_TOKENS[case](alice, bob)
    genuine = tokens.access_token_issue(user=alice)["access"]

    async def scenario():
        for path in (f"/ws/auctions/{auction.pk}/", "/ws/lobby/"):
            comm, connected = await ws_connect(path, token=token)
            assert not connected, f"{case}: {path} accepted"
            comm, connected = await ws_connect(path, token=genuine)
            assert connected, f"the genuine token was refused on {path}"
            await comm.disconnect()

    run(scenario())


# --- 2. staff-only routes and the admin -----------------------------------------------------

# Every operation of the API and who may call it. A route that is not here fails
# test_every_api_route_is_classified, so a new one cannot slip in unreviewed.
API_ACCESS = {
    ("POST", "/api/auth/register"): "anyone",
    ("POST", "/api/auth/token"): "anyone",
    ("GET", "/api/me"): "user",
    ("GET", "/api/me/bids"): "user",
    ("GET", "/api/me/ledger"): "user",
    ("GET", "/api/auctions"): "anyone",
    ("POST", "/api/auctions"): "staff",
    ("GET", "/api/auctions/{auction_id}"): "anyone",
    ("POST", "/api/auctions/{auction_id}/cancel"): "staff",
    ("POST", "/api/auctions/{auction_id}/bids"): "user",
    ("GET", "/api/auctions/{auction_id}/events"): "anyone",
    ("GET", "/api/auctions/{auction_id}/leaderboard"): "anyone",
    ("GET", "/api/bids/{bid_id}"): "user",
    ("POST", "/api/wallet/grants"): "staff",
    ("GET", "/api/health"): "anyone",
}
STAFF_ROUTES = sorted(route for route, who in API_ACCESS.items() if who == "staff")
USER_ROUTES = sorted(route for route, who in API_ACCESS.items() if who == "user")


def _staff_body(path: str) -> dict[str, Any] | None:
    """A body the route accepts from staff, so that a 403 for a normal user can only be the
    staff check (test_staff_get_through_with_the_same_requests proves the bodies are good)."""
    now = clock.now()
    return {
        "/api/auctions": {"title": "Vase", "starting_price": 10, "starts_at": (now - timedelta(seconds=1)).isoformat(),
                          "ends_at": (now + timedelta(minutes=5)).isoformat()},
        "/api/wallet/grants": {"username": "alice", "amount": 5},
    }.get(path)


def _call(client: Client, method: str, path: str, auction: Auction, body: Any = None, **headers):
    url = path.replace("{auction_id}", str(auction.pk)).replace("{bid_id}", "1")
    if method == "GET":
        return client.get(url, **headers)
    return post(client, url, body if body is not None else {}, **headers)


def _state() -> tuple[int, int, list[str]]:
    return Auction.objects.count(), Transfer.objects.count(), list(Auction.objects.values_list("status", flat=True))


@pytest.mark.django_db
def test_every_api_route_is_classified(client):
    schema = client.get("/api/openapi.json").json()
    operations = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert operations == set(API_ACCESS), "classify new API routes in API_ACCESS (anyone, user or staff)"


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", STAFF_ROUTES)
def test_a_staff_route_refuses_anonymous_with_401_and_a_normal_user_with_403(client, make_user, make_auction,
                                                                             method, path):
    alice = make_user("alice")
    auction = make_auction()
    before = _state()
    assert_error(_call(client, method, path, auction, _staff_body(path)), 401, "not_authenticated")
    assert_error(_call(client, method, path, auction, _staff_body(path), **bearer(alice)), 403, "forbidden")
    # Checked before the body: a broken one changes nothing.
    url = path.replace("{auction_id}", str(auction.pk))
    assert_error(post(client, url, raw="{broken", **bearer(alice)), 403, "forbidden")
    assert _state() == before, "a refused call changed something"


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", STAFF_ROUTES)
def test_staff_get_through_with_the_same_requests(client, make_user, make_auction, method, path):
    make_user("alice")
    root = make_user("root", staff=True)
    auction = make_auction()
    response = _call(client, method, path, auction, _staff_body(path), **bearer(root))
    assert response.status_code in (200, 201), response.content


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", USER_ROUTES)
def test_a_user_route_refuses_anonymous_with_401(client, make_auction, method, path):
    assert_error(_call(client, method, path, make_auction(), {"amount": 10}), 401, "not_authenticated")


def _admin_urls() -> list[str]:
    from django.contrib import admin

    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
    return urls


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["anonymous", "normal user", "inactive staff"])
def test_the_admin_sends_anyone_but_active_staff_to_its_login(make_user, make_auction, who):
    browser = Client()
    if who == "normal user":
        browser.force_login(make_user("alice"))
    elif who == "inactive staff":
        root = make_user("root", staff=True)
        browser.force_login(root)
        User.objects.filter(pk=root.pk).update(is_active=False)
    auction = make_auction()
    urls = _admin_urls()
    assert len(urls) > 10
    for url in urls:
        response = browser.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login") + "?next="), url
    # An action posted straight to a changelist is refused the same way and does nothing.
    changelist = reverse("admin:auctions_auction_changelist")
    response = browser.post(changelist, {"action": "cancel", "_selected_action": [auction.pk]})
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert Auction.objects.get(pk=auction.pk).status == Auction.Status.LIVE


@pytest.mark.django_db
def test_a_normal_user_cannot_log_in_to_the_admin(make_user):
    make_user("alice")
    browser = Client()
    response = browser.post(reverse("admin:login"), {"username": "alice", "password": PASSWORD,
                                                     "next": reverse("admin:index")})
    assert response.status_code == 200  # the form again, with its error
    assert "staff account" in response.text
    assert browser.get(reverse("admin:index")).status_code == 302


# --- 3. CSRF on the pages -------------------------------------------------------------------


def _csrf_exempt_routes() -> list[str]:
    found = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and getattr(p.callback, "csrf_exempt", False):
                found.append(prefix + str(p.pattern))

    walk(get_resolver().url_patterns, "")
    return found


def test_only_the_token_authenticated_api_is_csrf_exempt():
    exempt = _csrf_exempt_routes()
    assert exempt, "the API's views are exempt (they take no cookies)"
    assert all(route.startswith("api/") for route in exempt), [r for r in exempt if not r.startswith("api/")]


@pytest.mark.django_db
def test_the_api_ignores_the_session_cookie_which_is_why_it_needs_no_csrf(make_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user("alice"))
    assert browser.get("/wallet/").status_code == 200  # the session is good for pages
    assert_error(browser.get("/api/me"), 401, "not_authenticated")
    assert_error(post(browser, "/api/auctions/1/bids", {"amount": 10}), 401, "not_authenticated")


@pytest.mark.django_db
@pytest.mark.parametrize("path, form, as_staff", [
    ("/login/", {"username": "alice", "password": PASSWORD}, False),
    ("/signup/", {"username": "bob", "password1": "a-long-pass-42", "password2": "a-long-pass-42"}, False),
    ("/logout/", {}, False),
    ("/admin/login/", {"username": "root", "password": PASSWORD}, False),
    ("/admin/auctions/auction/", {"action": "cancel", "_selected_action": ["{auction}"]}, True),
    ("/admin/core/account/", {"action": "grant_coins", "_selected_action": ["{account}"], "apply": "1",
                              "amount": "50"}, True),
], ids=["login", "signup", "logout", "admin login", "admin action", "admin grant"])
def test_a_page_post_without_the_csrf_token_is_refused(make_user, make_auction, path, form, as_staff):
    alice = make_user("alice")
    root = make_user("root", staff=True)
    User.objects.filter(pk=root.pk).update(is_superuser=True)  # so only CSRF can stop the admin's actions
    auction = make_auction()
    form = {k: [str(v).format(auction=auction.pk, account=alice.account.pk) for v in vs] if isinstance(vs, list)
            else vs for k, vs in form.items()}
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(root if as_staff else alice)
    before = _state(), User.objects.count()
    for token in (None, "x" * 64):  # missing, and made up
        data = dict(form, **({"csrfmiddlewaretoken": token} if token else {}))
        assert browser.post(path, data).status_code == 403, (path, token)
    assert (_state(), User.objects.count()) == before
    assert browser.get("/wallet/").status_code == 200, "still logged in: logout was refused"
    # The control: the same post with the token goes through.
    browser.get("/login/")  # its form sets the CSRF cookie
    response = browser.post(path, dict(form, csrfmiddlewaretoken=browser.cookies["csrftoken"].value))
    assert response.status_code == 302, (path, response.status_code)


# --- 4. the sockets' Origin check -----------------------------------------------------------


@pytest.mark.usefixtures("transactional_db")
def test_a_foreign_origin_is_refused_even_with_a_valid_session_cookie(make_user, make_auction):
    """Cross-site WebSocket hijacking: a page elsewhere opens a socket that carries the
    victim's cookie. The Origin check refuses it; the same cookie from the site itself bids."""
    make_user("alice")
    auction = make_auction()
    browser = Client()
    assert browser.login(username="alice", password=PASSWORD)
    cookie = (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())

    async def scenario():
        for path in (f"/ws/auctions/{auction.pk}/", "/ws/lobby/"):
            for origin in ("https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.evil.example",
                           "null", "file://"):
                comm, connected = await ws_connect(path, headers=[(b"origin", origin.encode()), cookie])
                assert not connected, (path, origin)
        comm, connected = await ws_connect(f"/ws/auctions/{auction.pk}/",
                                           headers=[(b"origin", b"http://localhost:8000"), cookie])
        assert connected
        await ws_receive(comm)
        await comm.send_json_to({"type": "bid", "amount": 25})
        queued = await ws_receive(comm)
        assert queued["type"] == "bid.queued" and queued["bid"]["bidder"] == "alice"
        await comm.disconnect()

    run(scenario())


@pytest.mark.usefixtures("transactional_db")
def test_allowed_origins_follow_allowed_hosts_and_no_origin_is_let_through(make_auction, settings):
    from channels.routing import URLRouter

    from realtime.auth import socket_stack
    from realtime.routing import websocket_urlpatterns

    settings.ALLOWED_HOSTS = ["gavel.example.com"]
    app = socket_stack(URLRouter(websocket_urlpatterns))  # the stack reads ALLOWED_HOSTS when built
    auction = make_auction()

    async def scenario():
        for path in (f"/ws/auctions/{auction.pk}/", "/ws/lobby/"):
            for origin, allowed in (("https://gavel.example.com", True), ("http://localhost:8000", False),
                                    ("https://gavel.example.com.evil.example", False), (None, True)):
                headers = [(b"origin", origin.encode())] if origin else []
                comm, connected = await ws_connect(path, headers=headers, app=app)
                assert connected is allowed, (path, origin)
                if connected:
                    await comm.disconnect()

    run(scenario())


# --- 5. bid rate limits in Redis ------------------------------------------------------------


@pytest.mark.usefixtures("transactional_db")
def test_rest_and_socket_bids_share_one_bucket_kept_in_redis(make_user, make_auction, settings):
    from core.ratelimit import KEY_PREFIX
    from tasks.redis_client import client as redis

    settings.BID_RATE_PER_SECOND = 0.001
    settings.BID_RATE_BURST = 1
    alice = make_user("alice")
    auction = make_auction()
    rest = Client()
    assert post(rest, f"/api/auctions/{auction.pk}/bids", {"amount": 10}, **bearer(alice)).status_code == 202
    key = f"{KEY_PREFIX}{alice.pk}"
    assert redis().exists(key) and redis().pttl(key) > 0, "the bucket lives in Redis and expires"

    async def scenario():
        comm, connected = await ws_connect(f"/ws/auctions/{auction.pk}/",
                                           token=tokens.access_token_issue(user=alice)["access"])
        assert connected
        await ws_receive(comm)
        await comm.send_json_to({"type": "bid", "amount": 20, "client_bid_id": "second"})
        refused = await ws_receive(comm)
        assert refused["type"] == "error" and refused["code"] == "rate_limited"
        assert refused["client_bid_id"] == "second"
        assert await sync_to_async(Bid.objects.count)() == 1, "a refused bid stores nothing"
        # The bucket is Redis's, not the process's: emptied there (as a Redis restart would),
        # the next bid goes through.
        await sync_to_async(redis().delete)(key)
        await comm.send_json_to({"type": "bid", "amount": 30, "client_bid_id": "third"})
        assert (await ws_receive(comm))["type"] == "bid.queued"
        await comm.disconnect()

    run(scenario())
    assert_error(post(rest, f"/api/auctions/{auction.pk}/bids", {"amount": 40}, **bearer(alice)), 429, "rate_limited")


# --- 6. passwords ---------------------------------------------------------------------------


def _production_hashers() -> list[str]:
    import core.settings as configured

    return list(getattr(configured, "PASSWORD_HASHERS", global_settings.PASSWORD_HASHERS))


def test_production_hashes_with_pbkdf2_or_better():
    # The suite swaps in a fast hasher (conftest); this reads what core.settings configures.
    first = _production_hashers()[0].rsplit(".", 1)[-1]
    assert first in {"PBKDF2PasswordHasher", "Argon2PasswordHasher", "ScryptPasswordHasher",
                     "BCryptSHA256PasswordHasher"}, first


@pytest.mark.django_db
def test_a_registered_password_is_stored_hashed_and_checks(client, settings):
    settings.PASSWORD_HASHERS = _production_hashers()
    password = "a-Secret-only-alice-knows-42"
    assert post(client, "/api/auth/register", {"username": "alice", "password": password}).status_code == 201
    stored = User.objects.get(username="alice").password
    assert password not in stored
    hasher = identify_hasher(stored)
    assert hasher.algorithm == "pbkdf2_sha256"
    assert int(stored.split("$")[1]) >= hasher.iterations, "the current work factor"
    assert check_password(password, stored) and not check_password(password + "x", stored)
    assert post(client, "/api/auth/token", {"username": "alice", "password": password}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["short-1", "password123", "1234567890", "alice-alice"])
def test_a_weak_password_is_refused_at_register(client, password):
    """Too short, too common, all digits, too like the username."""
    response = post(client, "/api/auth/register", {"username": "alice-alice", "password": password})
    assert_error(response, 400, "weak_password")
    assert not User.objects.filter(username="alice-alice").exists()


# --- 7. settings: secrets from the environment, `check --deploy` ---------------------------


def _environment(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    from django.conf import settings

    env = {k: v for k, v in os.environ.items()
           if k not in {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "HTTPS", "TRUST_X_FORWARDED_PROTO"}
           and not k.startswith("HSTS_")}
    env.update(GAVEL_VAR_DIR=str(tmp_path), REDIS_URL=settings.REDIS_URL, DJANGO_SETTINGS_MODULE="core.settings")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _production(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    return _environment(tmp_path, **{"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(64),
                                     "ALLOWED_HOSTS": "gavel.example.com", "HTTPS": "1", **changes})


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_production_settings_pass_check_deploy(tmp_path):
    result = _check_deploy(_production(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("changes, expected", [
    ({"HTTPS": None}, {"security.W004", "security.W008", "security.W012", "security.W016"}),
    ({"SECRET_KEY": None}, {"gavel.W001"}),
    ({"SECRET_KEY": "too-short"}, {"security.W009"}),
    ({"DEBUG": "1"}, {"security.W018"}),
], ids=["without HTTPS", "without SECRET_KEY", "weak SECRET_KEY", "DEBUG on"])
def test_check_deploy_fails_on_what_production_must_not_have(tmp_path, changes, expected):
    result = _check_deploy(_production(tmp_path, **changes))
    assert result.returncode != 0
    assert expected <= set(re.findall(r"\(((?:security|gavel)\.W\d+)\)", result.stdout + result.stderr)), result.stderr


_SHOW = """
import django, os, stat
django.setup()
from django.conf import settings
print(settings.SECRET_KEY, settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE,
      settings.CSRF_COOKIE_SECURE, settings.SECURE_HSTS_SECONDS, settings.SECURE_PROXY_SSL_HEADER,
      oct(stat.S_IMODE(os.stat(settings.VAR_DIR / "secret_key").st_mode)))
"""


def test_without_a_secret_key_each_machine_makes_its_own_and_plain_http_works(tmp_path):
    """No key ships with the code: without SECRET_KEY a random one is made per var dir (only
    its owner may read it), and the embedded defaults serve plain http://localhost."""
    keys = []
    for name in ("one", "two"):
        out = subprocess.run([sys.executable, "-c", _SHOW], cwd=ROOT, env=_environment(tmp_path / name),
                             capture_output=True, text=True, timeout=120, check=True).stdout.split()
        key, *rest = out
        assert rest == ["False", "False", "False", "0", "None", "0o600"]
        assert len(key) >= 50
        keys.append(key)
    assert keys[0] != keys[1]


@pytest.mark.django_db
def test_with_https_on_pages_redirect_to_https_and_cookies_are_secure(make_user, settings):
    settings.SECURE_SSL_REDIRECT = settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    make_user("alice")
    browser = Client()  # built after the override: SecurityMiddleware reads the settings once
    response = browser.get("/login/")
    assert response.status_code == 301 and response["Location"] == "https://testserver/login/"
    assert browser.get("/api/health").status_code in (200, 503), "health checks stay on plain http"
    proxied = {"HTTP_X_FORWARDED_PROTO": "https"}
    page = browser.get("/login/", **proxied)
    assert page.status_code == 200
    assert page["Strict-Transport-Security"].startswith("max-age=31536000")
    logged_in = browser.post("/login/", {"username": "alice", "password": PASSWORD}, **proxied)
    assert logged_in.status_code == 302
    assert logged_in.cookies["sessionid"]["secure"] and logged_in.cookies["sessionid"]["httponly"]


# --- 8. no credential in the logs -----------------------------------------------------------


def _leaks(texts: list[str], secrets_: dict[str, str]) -> list[str]:
    return [name for name, secret in secrets_.items() if any(secret in text for text in texts)]


@pytest.mark.usefixtures("transactional_db")
def test_no_password_token_or_secret_key_is_logged(make_auction, caplog, settings):
    from django.db import connection

    caplog.set_level(logging.DEBUG)
    for name in ("django", "django.db.backends", "django.request", "channels", "gavel", "realtime", "core",
                 "auctions", "tasks", "uvicorn.error"):
        caplog.set_level(logging.DEBUG, logger=name)
    connection.force_debug_cursor = True  # every SQL statement of the request thread, with its parameters
    password = "Unguessable-pass-4242"
    auction = make_auction()
    client = Client()
    try:
        assert post(client, "/api/auth/register", {"username": "alice", "password": password}).status_code == 201
        assert post(client, "/api/auth/token", {"username": "alice", "password": password + "?"}).status_code == 401
        access = post(client, "/api/auth/token", {"username": "alice", "password": password}).json()["access"]
        auth = {"HTTP_AUTHORIZATION": f"Bearer {access}"}
        assert client.get("/api/me", **auth).status_code == 200
        assert post(client, f"/api/auctions/{auction.pk}/bids", {"amount": 10}, **auth).status_code == 202
        assert post(client, "/api/auctions/999999/bids", {"amount": 10}, **auth).status_code == 404
        services.bids_decide_pending(auction_id=auction.pk)

        async def scenario():
            comm, connected = await ws_connect(f"/ws/auctions/{auction.pk}/", token=access)
            assert connected
            await ws_receive(comm)
            await comm.send_json_to({"type": "bid", "amount": 20})
            assert (await ws_receive(comm))["type"] == "bid.queued"
            await comm.disconnect()
            refused, connected = await ws_connect(f"/ws/auctions/{auction.pk}/", token=access + "x")
            assert not connected

        run(scenario())
    finally:
        connection.force_debug_cursor = False
    texts = [caplog.text] + [repr(vars(r)) for r in caplog.records]
    # The capture did see the requests: Django's refusals and the SQL with its parameters.
    assert any(r.getMessage().startswith("Unauthorized: /api/auth/token") for r in caplog.records)
    assert any(r.name == "django.db.backends" for r in caplog.records)
    assert not _leaks(texts, {"password": password, "token": access, "SECRET_KEY": settings.SECRET_KEY})


def test_the_server_log_filter_redacts_tokens_and_cookies():
    from core.redact import RedactCredentials

    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5000", "/ws/auctions/1/?token=eyJ.abc.def&x=1"), None)
    RedactCredentials().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /ws/auctions/1/?token=[redacted]&x=1" [accepted]'
    header = logging.LogRecord("uvicorn.error", logging.DEBUG, __file__, 1, "< %s: %s",
                               ("Cookie", "csrftoken=abc; sessionid=s3cr3t"), None)
    RedactCredentials().filter(header)
    assert header.getMessage() == "< Cookie: csrftoken=[redacted]; sessionid=[redacted]"
    bearer_ = logging.LogRecord("x", logging.DEBUG, __file__, 1, "Authorization: Bearer eyJ.x.y", None, None)
    RedactCredentials().filter(bearer_)
    assert bearer_.getMessage() == "Authorization: Bearer [redacted]"


@pytest.mark.slow
def test_a_real_web_node_logs_no_token_password_or_cookie(transactional_db, make_auction):
    """Through uvicorn itself, access log on, debug level: uvicorn writes every socket's URL
    (and at debug the handshake's headers) to its log, `?token=` included."""
    import urllib.error
    import urllib.request

    import websockets
    from django.conf import settings

    from deploy.launch import WEB_NODE
    from tests import procs

    auction = make_auction()
    password = "Unguessable-pass-4242"
    port = procs.free_port()
    node = procs.Proc("web-sec", [sys.executable, *WEB_NODE, "--host", "127.0.0.1", "--port", str(port),
                                  "--lifespan", "off", "--log-level", "debug"],
                      {**procs._env(), "LOG_LEVEL": "DEBUG"})
    base = f"http://127.0.0.1:{port}"

    def call(path: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    try:
        procs.wait_port(port)
        assert call("/api/auth/register", {"username": "alice", "password": password})[0] == 201
        status, body = call("/api/auth/token", {"username": "alice", "password": password})
        assert status == 200
        access = body["access"]
        assert call("/api/me", token=access)[0] == 200
        assert call(f"/api/auctions/{auction.pk}/bids", {"amount": 10}, token=access)[0] == 202

        async def sockets():
            url = f"ws://127.0.0.1:{port}/ws/auctions/{auction.pk}/"
            async with websockets.connect(f"{url}?token={access}",
                                          additional_headers={"Cookie": "sessionid=cookie-s3cr3t"}) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(f"{url}?token={access}x"):
                    pass
            assert refused.value.response.status_code == 403  # the contract's refusal

        run(sockets())
    finally:
        node.stop()
    log = node.output()
    assert "WebSocket /ws/auctions/" in log and '"GET /api/me HTTP/1.1" 200' in log, log[-3000:]
    assert not _leaks([log], {"password": password, "token": access, "cookie": "cookie-s3cr3t",
                              "SECRET_KEY": settings.SECRET_KEY}), log[-3000:]

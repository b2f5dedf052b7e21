"""A token's user, remembered by each web process for TOKEN_USER_CACHE_S (core.tokens): changes
made in the process are seen at once, changes made elsewhere within that time."""

from __future__ import annotations

import pytest

from core import tokens
from core.models import User
from tests.api_client import assert_error, bearer


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(tokens, "time", fake)
    return fake


def test_a_user_deactivated_in_this_process_is_refused_at_once(client, make_user, clock):
    user = make_user("alice")
    headers = bearer(user)
    assert client.get("/api/me", **headers).status_code == 200

    user.is_active = False
    user.save()

    assert_error(client.get("/api/me", **headers), 401, "not_authenticated")


def test_a_user_deactivated_elsewhere_is_refused_within_the_cache_time(client, make_user, clock, settings):
    """update() sends no signal: it stands for an operator working in another process."""
    settings.TOKEN_USER_CACHE_S = 1.0
    user = make_user("alice")
    headers = bearer(user)
    assert client.get("/api/me", **headers).status_code == 200

    User.objects.filter(pk=user.pk).update(is_active=False)
    clock.now += 0.5
    assert client.get("/api/me", **headers).status_code == 200  # remembered, as documented
    clock.now += 0.6

    assert_error(client.get("/api/me", **headers), 401, "not_authenticated")


def test_with_no_cache_time_every_request_reads_the_user(client, make_user, clock, settings):
    settings.TOKEN_USER_CACHE_S = 0
    user = make_user("alice")
    headers = bearer(user)
    assert client.get("/api/me", **headers).status_code == 200

    User.objects.filter(pk=user.pk).update(is_active=False)

    assert_error(client.get("/api/me", **headers), 401, "not_authenticated")


def test_a_user_reactivated_elsewhere_is_let_in_once_the_refusal_expires(client, make_user, clock, settings):
    settings.TOKEN_USER_CACHE_S = 1.0
    user = make_user("alice")
    headers = bearer(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert_error(client.get("/api/me", **headers), 401, "not_authenticated")

    User.objects.filter(pk=user.pk).update(is_active=True)
    clock.now += 1.1

    assert client.get("/api/me", **headers).status_code == 200


def test_each_lookup_gets_an_instance_of_its_own(make_user, clock):
    user = make_user("alice")
    token = tokens.access_token_issue(user=user)["access"]

    first, second = tokens.user_from_token(token), tokens.user_from_token(token)

    assert first == second == user and first is not second
    first.username = "changed by one request"
    assert second.username == "alice"
    assert (first.is_active, first.is_staff, first.date_joined) == (True, False, user.date_joined)

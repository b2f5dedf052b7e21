"""Shared fixtures. Tests that need real Celery workers or beat use tests/procs.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import clock
from core.models import User


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Gavel's own Redis keys (assignment, heartbeats, rate limits) start empty in every test.
    Celery's queues and bindings are left alone: a session-wide worker relies on them."""
    from tasks.redis_client import client

    def wipe() -> None:
        keys = list(client().scan_iter(match="gavel:*", count=1000))
        if keys:
            client().delete(*keys)

    wipe()
    yield
    wipe()


@pytest.fixture
def make_user(db):
    def make(username: str, *, password: str = "correct-horse-42", staff: bool = False) -> User:
        return User.objects.create_user(username=username, password=password, is_staff=staff)

    return make


@pytest.fixture
def make_auction(db):
    from auctions import services

    def make(*, seller: str | None = None, starts_in: float = -1, lasts: float = 60, **fields):
        now = clock.now()
        fields.setdefault("title", "Lot")
        fields.setdefault("starting_price", 10)
        return services.auction_create(
            starts_at=now + timedelta(seconds=starts_in),
            ends_at=now + timedelta(seconds=starts_in + lasts),
            seller=seller,
            **fields,
        )

    return make

"""core.middleware under ASGI (AsyncClient: Django's ASGI handler, as uvicorn runs it): the chain
stays in the event loop, and what the middleware promise still holds there."""

from __future__ import annotations

import asyncio

import pytest
from django.test import AsyncClient

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unknown_api_path_is_a_json_404_under_asgi():
    async def scenario():
        return await AsyncClient().get("/api/no-such-thing")

    response = asyncio.run(scenario())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_static_files_are_served_under_asgi():
    async def scenario():
        return await AsyncClient().get("/static/core/gavel.css")

    response = asyncio.run(scenario())
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_the_chain_runs_in_the_event_loop():
    """With every middleware async-capable Django builds the chain without adapters; one
    sync-only middleware (WhiteNoise's own, for one) makes it a thread hop wrapped as async."""
    from asgiref.sync import SyncToAsync
    from django.core.handlers.asgi import ASGIHandler

    chain = ASGIHandler()._middleware_chain
    assert asyncio.iscoroutinefunction(chain) and not isinstance(chain, SyncToAsync)

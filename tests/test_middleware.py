"""core.middleware under ASGI (AsyncClient: Django's ASGI handler, as uvicorn runs it): the chain
stays in the event loop, and what the middleware promise still holds there."""

from __future__ import annotations

import asyncio
import json

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


def test_under_djangos_asgi_handler_the_chain_runs_in_the_event_loop():
    """With every middleware async-capable Django builds the chain without adapters; one
    sync-only middleware (WhiteNoise's own, for one) makes it a thread hop wrapped as async."""
    from asgiref.sync import SyncToAsync
    from django.core.handlers.asgi import ASGIHandler

    chain = ASGIHandler()._middleware_chain
    assert asyncio.iscoroutinefunction(chain) and not isinstance(chain, SyncToAsync)


def _through_the_web_nodes_handler(path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    from channels.testing import HttpCommunicator

    from core.asgi_handler import PooledThreadsASGIHandler

    async def scenario():
        return await HttpCommunicator(PooledThreadsASGIHandler(), "GET", path,
                                      headers=[(b"host", b"testserver")]).get_response(timeout=10)

    answer = asyncio.run(scenario())
    return answer["status"], dict(answer["headers"]), answer["body"]


def test_the_web_nodes_handler_runs_the_chain_and_the_view_in_one_sync_call():
    from core.asgi_handler import PooledThreadsASGIHandler

    handler = PooledThreadsASGIHandler()
    assert not asyncio.iscoroutinefunction(handler._middleware_chain)
    status, headers, body = _through_the_web_nodes_handler("/api/no-such-thing")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"  # JsonErrorsMiddleware
    assert headers[b"X-Frame-Options"] == b"DENY"  # and Django's, sync: XFrameOptionsMiddleware

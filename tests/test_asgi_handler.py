"""core.asgi_handler: each request's sync code on one thread of its own, in one hop, threads reused
after."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals

from core.asgi_handler import ExecutorPool, PooledThreadsASGIHandler


class _Recorder(PooledThreadsASGIHandler):
    """Runs three sync steps per request, as middleware, view and response would, and records
    the thread of each instead of serving anything."""

    def __init__(self, pool: ExecutorPool) -> None:
        self.pool = pool  # no Django setup needed for what is tested here
        self.threads: dict[str, list[threading.Thread]] = {}
        self.gate = asyncio.Event()

    async def handle(self, scope, receive, send) -> None:
        name = scope["path"]
        for _ in range(3):
            thread = await sync_to_async(threading.current_thread)()  # thread_sensitive, as Django's calls
            self.threads.setdefault(name, []).append(thread)
            if scope.get("wait"):
                await self.gate.wait()


def _scope(path: str, **extra) -> dict:
    return {"type": "http", "path": path, **extra}


def test_a_requests_sync_code_stays_on_one_thread_and_the_thread_is_reused():
    handler = _Recorder(ExecutorPool(max_idle=4))

    async def scenario() -> None:
        await handler(_scope("/a"), None, None)
        await handler(_scope("/b"), None, None)

    asyncio.run(scenario())
    a, b = handler.threads["/a"], handler.threads["/b"]
    assert len(set(a)) == 1 and len(set(b)) == 1
    assert a[0] is b[0], "the second request should reuse the first one's idle thread"
    assert a[0] is not threading.current_thread()


def test_requests_running_at_once_get_threads_of_their_own():
    handler = _Recorder(ExecutorPool(max_idle=4))

    async def scenario() -> None:
        both = asyncio.gather(handler(_scope("/a", wait=True), None, None),
                              handler(_scope("/b", wait=True), None, None))
        while len(handler.threads) < 2:
            await asyncio.sleep(0.01)
        handler.gate.set()
        await both

    asyncio.run(scenario())
    a, b = handler.threads["/a"], handler.threads["/b"]
    assert len(set(a)) == 1 and len(set(b)) == 1 and a[0] != b[0]
    assert len(handler.pool.idle) == 2


def test_the_pool_keeps_at_most_max_idle_threads():
    pool = ExecutorPool(max_idle=1)
    first, second = pool.take(), pool.take()
    pool.give(first)
    pool.give(second)
    assert pool.idle == [first]
    assert second._shutdown


def _get(app: PooledThreadsASGIHandler, path: str) -> tuple[int, bytes, list[str]]:
    """One GET through the real handler, as uvicorn would call it: (status, body, what happened
    in order: the signals' and the body's arrival)."""
    happened: list[str] = []
    status, body = 0, b""

    async def scenario() -> None:
        nonlocal status, body
        request = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive():
            if request:
                return request.pop()
            await asyncio.sleep(3600)  # no disconnect: the client waits for its answer

        async def send(message):
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                body += message.get("body", b"")
                if not message.get("more_body"):
                    happened.append("body sent")

        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"host", b"testserver")], "server": ("testserver", 80),
                 "client": ("127.0.0.1", 1), "scheme": "http", "root_path": "", "http_version": "1.1"}
        await app(scope, receive, send)

    def started(**_):
        happened.append(f"started on {threading.current_thread().name}")

    def finished(**_):
        happened.append(f"finished on {threading.current_thread().name}")

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        asyncio.run(scenario())
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    return status, body, happened


@pytest.mark.django_db(transaction=True)
def test_a_request_is_served_with_its_signals_once_each_on_its_own_thread():
    """The signals, the middleware and the view in one hop to the request's thread; the
    response's close (request_finished: Django closes the request's database connection) in the
    same hop, before the body goes out, which an already rendered body does not need."""
    status, body, happened = _get(PooledThreadsASGIHandler(), "/api/auctions")

    assert status == 200 and isinstance(json.loads(body), dict | list)
    thread = happened[0].removeprefix("started on ")
    assert thread.startswith("gavel-request")
    assert happened == [f"started on {thread}", f"finished on {thread}", "body sent"]


# Django's own warning for any file served under ASGI (WhiteNoise's response iterates the file
# synchronously); it says nothing about this handler.
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
@pytest.mark.django_db(transaction=True)
def test_a_streamed_file_is_closed_after_its_last_chunk_is_sent():
    app = PooledThreadsASGIHandler()
    app.chunk_size = 64  # several chunks
    status, body, happened = _get(app, "/static/auctions/room.js")

    assert status == 200
    assert body == (settings.BASE_DIR / "auctions/static/auctions/room.js").read_bytes()
    assert len(body) > 64
    assert [h.split(" on ")[0] for h in happened] == ["started", "body sent", "finished"]

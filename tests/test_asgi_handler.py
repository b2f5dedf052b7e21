"""core.asgi_handler: each request's sync code on one thread of its own, threads reused after."""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import sync_to_async

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

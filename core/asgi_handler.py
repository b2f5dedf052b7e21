"""Django's ASGI handler, with the threads of requests' sync code reused.

Django runs each request under a ThreadSensitiveContext of its own, so the request's sync code
(middleware, the view, the ORM) runs on a thread created for that request and joined after it:
in the hot-auction benchmark's REST run, starting and stopping those threads was a fifth of a
web process's CPU. Here each request still gets a single-thread executor to itself for as long
as it runs (what the context is for: the request's sync calls stay on one thread, in order), but
the executor comes from a pool of idle ones and goes back after, like a WSGI server's threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

MAX_IDLE = 64  # idle request threads kept per process; more are stopped when their request ends


class ExecutorPool:
    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.max_idle = max_idle
        self.idle: list[ThreadPoolExecutor] = []
        self.lock = threading.Lock()

    def take(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="gavel-request")

    def give(self, executor: ThreadPoolExecutor) -> None:
        with self.lock:
            if len(self.idle) < self.max_idle:
                self.idle.append(executor)
                return
        executor.shutdown(wait=False)


class PooledThreadsASGIHandler(ASGIHandler):
    def __init__(self, pool: ExecutorPool | None = None) -> None:
        super().__init__()
        self.pool = pool or ExecutorPool()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.pool.take()
        try:
            # A request whose client went away may leave its sync code running on the thread;
            # the next request given this executor then starts after it, as on a WSGI thread.
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.pool.give(executor)


def get_asgi_application() -> PooledThreadsASGIHandler:
    import django

    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler()

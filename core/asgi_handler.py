"""Django's ASGI handler, run the way a WSGI server runs Django: one thread hop per request, on
a reused thread.

- The middleware chain and the view are sync and run together in one `sync_to_async` call.
  Django's own ASGI handler keeps the chain async, and its middleware (MiddlewareMixin) then
  runs each process_request, process_view and process_response through a thread hop of its own:
  about a dozen hops per API request, and the view (sync: the ORM is) one more.
- That one hop also sends `request_started` and, for a body already rendered, closes the
  response (`request_finished`: Django closes the request's database connection) before the
  body goes out. Django's handler spends a hop on each of those two, and runs the request as a
  task beside another that waits for the client to disconnect, to cancel it: a sync view on its
  thread cannot be cancelled, and uvicorn drops what is sent to a client that left. A streamed
  response (a static file) is still closed after its last chunk, in a hop of its own.
- Django runs each request under a ThreadSensitiveContext of its own, so that sync code runs on
  a thread created for the request and joined after it. Here each request still gets a
  single-thread executor to itself while it runs, but from a pool of idle ones, to which it goes
  back after, like a WSGI server's threads.

In the hot-auction benchmark's REST run (python -m bench.hot_auction --via rest), thread starts
and the per-middleware hops were about a third of a web process's CPU; after them, Django's
three hops per request and the disconnect task were ~40% (py-spy --gil), and serving a request
in one hop took the web's CPU per REST bid from 3.0-3.1 to 1.9 ms (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

MAX_IDLE = 64  # idle request threads kept per process; more are stopped when their request ends

# The event loop serving the request, seen by its sync code (contextvars follow it to its thread):
# a view may hand work to something the loop runs for many requests at once (the bid intake's
# group commit, auctions/intake_batch.py). None outside a served request (Django's test Client).
server_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "server_loop", default=None)


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

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)  # the sync chain, as under WSGI

    async def handle(self, scope, receive, send) -> None:
        """Django's handle (see the module's doc), in one hop."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
            await self.send_response(response, send)
            if response.streaming:
                await sync_to_async(response.close, thread_sensitive=True)()
        finally:
            body_file.close()

    def _respond(self, scope, body_file) -> HttpResponseBase:
        """On the request's thread: what Django's handle does around the sync chain."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        response._handler_class = self.__class__
        if not response.streaming:
            response.close()
        return response

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        server_loop.set(asyncio.get_running_loop())
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

"""One socket's way out: frames go to the ASGI `send` in order, without a task per frame, and a
client that stops reading gets a bounded backlog, then a 1013 close.

The process hub writes one event to thousands of sockets in a plain loop. An ASGI `send` almost
never has to wait (uvicorn's only wait is for the transport to drop below its high-water mark),
so `put` steps the send coroutine by hand and is done when it returns at once; only a send that
really waits gets a task, and frames behind it queue in a deque of at most `capacity` messages.
(On Python 3.12+ an eager task would do the same; this keeps 3.11.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from core import counters

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 1013  # try again later: the client reconnects and resumes from its last seq
TOO_SLOW = {"type": "websocket.close", "code": CLOSE_TOO_SLOW}

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _finish(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
    """Run a coroutine to its end that was stepped by hand and is suspended on `waiting_on`."""
    try:
        while True:
            if waiting_on is None:  # a bare yield (asyncio.sleep(0)): just let the loop turn
                await asyncio.sleep(0)
            else:
                # What Task.__step does with a yielded future before waiting on it; the future
                # refuses a second await while the flag is still set.
                waiting_on._asyncio_future_blocking = False
                try:
                    await waiting_on
                except BaseException:  # noqa: BLE001 - the coroutine reads the outcome itself when resumed
                    pass
            waiting_on = coro.send(None)
    except StopIteration:
        return


class Outbox:
    __slots__ = ("_send", "_capacity", "_on_overflow", "_backlog", "_drainer", "closed")

    def __init__(self, send: Send, *, capacity: int, on_overflow: Callable[[], None]) -> None:
        self._send = send
        self._capacity = capacity
        self._on_overflow = on_overflow
        self._backlog: deque[dict[str, Any]] | None = None  # set while a send waits for the client
        self._drainer: asyncio.Future[None] | None = None
        self.closed = False  # a close was sent or queued: nothing more goes out

    async def send(self, message: dict[str, Any]) -> None:
        """The ASGI `send` the consumer is given, so its own frames keep their place in line."""
        self.put(message)

    @property
    def backlog(self) -> int:
        return len(self._backlog) if self._backlog is not None else 0

    def put(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        if message["type"] == "websocket.close":
            self.closed = True
        if self._backlog is not None:
            if len(self._backlog) >= self._capacity and not self.closed:
                counters.buffered(counters.WS_FRAMES_DROPPED, len(self._backlog) + 1, where="socket")
                counters.buffered(counters.WS_SLOW_CLOSES)
                self._backlog.clear()
                self._backlog.append(TOO_SLOW)
                self.closed = True
                self._on_overflow()
                return
            self._backlog.append(message)
            return
        coro = self._send(message)
        try:
            waiting_on = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 - the client is gone; its disconnect follows
            log.debug("send failed", exc_info=True)
            self.closed = True
            return
        self._backlog = deque()
        self._drainer = asyncio.ensure_future(self._drain(coro, waiting_on))

    async def _drain(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        try:
            await _finish(coro, waiting_on)
            while self._backlog:
                await self._send(self._backlog.popleft())
        except Exception:  # noqa: BLE001 - the client is gone; its disconnect follows
            log.debug("send failed", exc_info=True)
            self.closed = True
        finally:
            self._backlog = None
            self._drainer = None

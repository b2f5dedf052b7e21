"""The one way out to clients: services call these after commit, nothing else sends to groups.

Each process keeps one event loop on a daemon thread with one channel layer (so one Redis
connection pool) instead of `async_to_sync(group_send)`, which opens a connection per call.
Messages go through one queue and are sent one at a time, so a group sees them in the order the
services published them. Delivery is best effort by design: the event log in the database is the
record, and sockets repair gaps from it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

from realtime import frames

log = logging.getLogger(__name__)

LOBBY_GROUP = "lobby"
MAX_PIPELINE = 500  # messages per Redis round trip
# Fewer queued messages than this go one PUBLISH each. Measured (python -m bench.timers
# --auctions 1000 --window 60, p99 lateness of auction.ended): an end publishes 3-5 messages, and
# with those pipelined the bid workers ended clustered auctions later (p99 247-334 ms in five
# runs) than one by one (200-232 ms in two, 205-254 before pipelines existed). Not explained;
# a decided batch of a hot auction (a frame per bidder, tens of them) gains a lot from one round trip.
PIPELINE_FROM = 8


def auction_group(auction_id: int) -> str:
    return f"auction.{auction_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class _Sender:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] | None = None
        self.thread = threading.Thread(target=self._run, name="gavel-publish", daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        self.ready.set()
        self.loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        assert self.queue is not None
        layer = get_channel_layer()
        many = getattr(layer, "group_send_many", None)  # realtime.layer's; tests' in-memory layer lacks it
        while True:
            # What a decided batch queued (a frame per bidder) goes out in one pipeline.
            items = [await self.queue.get()]
            while len(items) < MAX_PIPELINE and not self.queue.empty():
                items.append(self.queue.get_nowait())
            done = None in items
            messages = [item for item in items if item is not None]
            try:
                if many is not None and len(messages) >= PIPELINE_FROM:
                    await many(messages)
                else:
                    for group, message in messages:
                        await layer.group_send(group, message)
            except Exception:  # a Redis blip must not kill the sender; sockets backfill by seq
                log.warning("group_send of %d message(s) failed", len(messages), exc_info=True)
            finally:
                for _ in items:
                    self.queue.task_done()
            if done:
                return

    def put(self, group: str, message: dict[str, Any]) -> None:
        assert self.queue is not None
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (group, message))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far has been handed to Redis (tests, shutdown)."""
        assert self.queue is not None
        asyncio.run_coroutine_threadsafe(self.queue.join(), self.loop).result(timeout)


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get_sender() -> _Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():
            _sender = _Sender()
        return _sender


def send(group: str, message: dict[str, Any]) -> None:
    # Each web process receives for all its sockets on one channel (realtime.hub): the group
    # travels with the message so the process knows whose sockets it is for.
    _get_sender().put(group, {**message, "group": group})


def flush(timeout: float = 5.0) -> None:
    if _sender is not None and _sender.pid == os.getpid():
        _sender.flush(timeout)


def publish_events(auction_id: int, events: list[dict[str, Any]]) -> None:
    """One message for the events one transaction committed (their seqs are contiguous): the
    web processes then write them to each socket in one go. Each frame is encoded here, once,
    not once per watching socket."""
    if events:
        texts = [frames.encode({"type": "event", "event": event}) for event in events]
        send(auction_group(auction_id),
             {"type": "auction.events", "auction_id": auction_id, "seq": events[0]["seq"], "texts": texts})


def publish_to_user(user_id: int, frame: dict[str, Any]) -> None:
    send(user_group(user_id), {"type": "user.frame", "frame": frame, "text": frames.encode(frame)})


def publish_lobby(auction: dict[str, Any]) -> None:
    text = frames.encode({"type": "auction", "auction": auction})
    send(LOBBY_GROUP, {"type": "lobby.auction", "auction": auction, "text": text})

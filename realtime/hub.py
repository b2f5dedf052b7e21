"""The process's one channel-layer consumer: its sockets share one channel and one subscription
per group, and each published frame is written to every local socket in one plain loop.

Channels' usual shape gives every socket its own channel: a group message is then decoded,
queued, wrapped in a task and dispatched once per socket, which the fan-out benchmark measured
at over 100 µs per socket per event. Here a message is decoded once per process, its frame was
encoded once at publish, and the ASGI message that carries it is built once and handed to each
socket's Outbox, with the WebSocket frame's bytes ready (realtime.wsnode).

Members are consumers with synchronous hooks: `hub_events(first_seq, outs, run)` for the
events one transaction committed (one message each, written to a socket in one go when it is
in step), `hub_message(kind, message, out)` for any other frame from one of their groups,
`hub_resync()` when the process may have missed messages, and `hub_behind(seq)` for the audit.

Gaps: messages the channel layer lost (a Redis blip, a full buffer) are found in two ways: a
socket sees a seq jump, or the audit finds a socket still short of the seq the database had one
round (WS_AUDIT_S) earlier, so an event still in flight is never counted; that also catches the
last event of a quiet auction. Either way sockets refill from the event log; `events_since`
shares one database read among all the sockets of the process that ask for the same range.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import weakref
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from core import counters
from realtime import frames, snapshots
from realtime.wsnode import prepare, prepare_run

log = logging.getLogger(__name__)


_PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def _node_report(count: int) -> None:
    counters.node_report(node=_PROCESS, open_sockets=count, now=time.time())


def _audit_read(auction_ids: list[int]) -> dict[int, int]:
    from auctions.models import Auction

    return dict(Auction.objects.filter(pk__in=auction_ids).values_list("pk", "seq"))


def _events_read(auction_id: int, after: int) -> list[tuple[int, dict[str, Any]]] | None:
    events = snapshots.events_since(auction_id=auction_id, after=after)
    if events is None:
        return None
    return [(e["seq"], prepare(frames.encode({"type": "event", "event": e}))) for e in events]


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.groups: dict[str, dict[Any, None]] = {}  # group -> its local members, in join order
        self.subscribed: set[str] = set()
        self.lock = asyncio.Lock()
        self.tasks: list[asyncio.Task[None]] = []
        self.fetches: dict[tuple[int, int], asyncio.Future[Any]] = {}
        self.logged: dict[int, int] = {}  # auction id -> its seq in the database at the last audit
        self.open_sockets = 0
        # auction id -> (snapshot for anonymous viewers, its seq); see remember_snapshot.
        self.snapshots: dict[int, dict[str, Any]] = {}

    async def _start(self) -> None:
        if self.channel is None:
            self.channel = await self.layer.new_channel()
            self.tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._audit()),
                          asyncio.ensure_future(self._report_sockets())]

    async def join(self, member: Any, groups: list[str]) -> None:
        """Subscribe (once per process) before returning, so whatever is published after this
        reaches the member; read a snapshot only afterwards."""
        for group in groups:
            if group not in self.subscribed:
                async with self.lock:
                    await self._start()
                    if group not in self.subscribed:
                        await self.layer.group_add(group, self.channel)
                        self.subscribed.add(group)
            self.groups.setdefault(group, {})[member] = None

    async def leave(self, member: Any, groups: list[str]) -> None:
        for group in groups:
            members = self.groups.get(group)
            if members is None:
                continue
            members.pop(member, None)
            if members:
                continue
            del self.groups[group]
            self._forget_snapshot(group)
            async with self.lock:
                if group in self.subscribed and not self.groups.get(group):
                    # Marked first: a join meanwhile waits for the lock and subscribes again.
                    self.subscribed.discard(group)
                    await self.layer.group_discard(group, self.channel)

    async def _read(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            try:
                self._route(message)
            except Exception:  # one bad message must not stop the process's delivery
                log.exception("hub could not route %s", message.get("type"))

    def _route(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "layer.overflow":
            log.warning("the process's channel buffer overflowed; sockets refill from the log")
            self.resync_all()
            return
        if kind == "auction.events":
            self._route_events(message)
            return
        members = self.groups.get(message.get("group", ""))
        if not members:
            return
        out = prepare(message["text"])
        for member in tuple(members):
            try:
                member.hub_message(kind, message, out)
            except Exception:
                log.exception("socket hook failed")

    def _route_events(self, message: dict[str, Any]) -> None:
        first, texts = message["seq"], message["texts"]
        cached = self.snapshots.get(message["auction_id"])
        if cached is not None and first + len(texts) - 1 > cached["seq"]:
            del self.snapshots[message["auction_id"]]
        members = self.groups.get(message.get("group", ""))
        if not members:
            return
        outs = [prepare(text) for text in texts]
        run = prepare_run(outs)
        for member in tuple(members):
            try:
                member.hub_events(first, outs, run)
            except Exception:
                log.exception("socket hook failed")

    def resync_all(self) -> None:
        self.snapshots.clear()
        for members in list(self.groups.values()):
            for member in tuple(members):
                member.hub_resync()

    # --- the anonymous snapshot, shared by the process's sockets ---
    #
    # A connect storm (a hot auction, a node restart) would read the same snapshot from the
    # database once per socket. Anonymous viewers all see the same one, so the process keeps the
    # last one read while it stays exact: it is dropped when an event past it arrives, when the
    # process stops watching the auction, and on an overflow. A socket takes it only after it has
    # joined the group, so every event after the snapshot's seq reaches that socket; one the layer
    # lost is refilled by the audit, as for every other socket.

    def cached_snapshot(self, auction_id: int) -> dict[str, Any] | None:
        return self.snapshots.get(auction_id)

    def remember_snapshot(self, auction_id: int, snapshot: dict[str, Any]) -> None:
        if f"auction.{auction_id}" in self.subscribed:
            current = self.snapshots.get(auction_id)
            if current is None or current["seq"] <= snapshot["seq"]:
                self.snapshots[auction_id] = snapshot

    def _forget_snapshot(self, group: str) -> None:
        if group.startswith("auction."):
            self.snapshots.pop(int(group.split(".", 1)[1]), None)

    async def _report_sockets(self) -> None:
        """This process's part of /metrics, every second: its open sockets (stamped, so a dead
        process stops counting) and the socket counters it kept in memory (core.counters)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await sync_to_async(_node_report, thread_sensitive=False)(self.open_sockets)
            except Exception:  # metrics never break sockets; Redis may be away for a moment
                log.debug("socket count report failed", exc_info=True)

    async def events_since(self, auction_id: int, after: int) -> list[tuple[int, dict[str, Any]]] | None:
        """The log's events after `after` as ready ASGI messages, or None when too many are
        missing (send a snapshot). Concurrent asks for the same range share one read."""
        key = (auction_id, after)
        fetch = self.fetches.get(key)
        if fetch is None:
            fetch = asyncio.ensure_future(database_sync_to_async(_events_read)(auction_id, after))
            self.fetches[key] = fetch
            fetch.add_done_callback(lambda _: self.fetches.pop(key, None))
        return await asyncio.shield(fetch)

    async def _audit(self) -> None:
        while True:
            await asyncio.sleep(settings.WS_AUDIT_S)
            try:
                await self._audit_once()
            except Exception:  # the database may be away for a moment; try again next round
                log.warning("hub audit failed", exc_info=True)

    async def _audit_once(self) -> None:
        watched = {int(g.split(".", 1)[1]): g for g in self.groups if g.startswith("auction.")}
        previous, self.logged = self.logged, {}
        if not watched:
            return
        self.logged = await database_sync_to_async(_audit_read)(list(watched))
        for auction_id, seq in previous.items():
            cached = self.snapshots.get(auction_id)
            if cached is not None and cached["seq"] < seq:
                del self.snapshots[auction_id]  # an event past it never arrived
            members = self.groups.get(watched.get(auction_id, ""), {})
            behind = [m for m in tuple(members) if m.hub_behind(seq)]
            if behind:
                log.warning("auction %s: %d socket(s) never got events up to seq %s; refilling from the log",
                            auction_id, len(behind), seq, extra={"auction_id": auction_id})
                for member in behind:
                    member.hub_resync()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub (one per web process; tests run several loops one after another)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found

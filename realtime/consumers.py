"""WebSocket consumers: auth, group membership and frame translation, nothing else.

Sockets have no channel of their own: the process hub (realtime.hub) is the one channel-layer
consumer and calls the `hub_*` hooks here, synchronously, for every frame of a socket's groups;
every frame leaves through the socket's Outbox, in order.

Ordering: events that arrive while the snapshot or a refill is being read wait in `waiting` and
go out after it; user frames that arrive while a bid is being submitted wait until `bid.queued`
is out. Every event frame carries `seq`; a socket that sees a gap (a message the channel layer
dropped) refills it from the persisted log before going on, so it always gets N+1, N+2...
exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from auctions import services
from auctions.intake_batch import bid_intake
from core import clock, counters
from core.errors import ServiceError, unavailable_errors
from core.timefmt import iso
from realtime import frames, snapshots
from realtime.hub import hub
from realtime.outbox import CLOSE_TOO_SLOW, Outbox  # 1013, try again later: also used when the layer is away
from realtime.publish import LOBBY_GROUP, auction_group, user_group
from realtime.wsnode import serves_prepared_runs

log = logging.getLogger(__name__)
UNAVAILABLE = unavailable_errors()

# Per-socket flood control: a token bucket over all client frames.
FRAMES_PER_SECOND = 20.0
FRAME_BURST = 40
# This many `rate_limited` errors within the window close the socket (1008, policy violation).
ABUSE_LIMIT = 20
ABUSE_WINDOW_S = 10.0
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_NOT_FOUND = 4404

class _Base(AsyncWebsocketConsumer):
    """Shared by the room and the lobby: handshake auth, flood control, ping, user frames."""

    # No channel per socket: the process hub receives for all of them (see realtime.hub).
    channel_layer_alias = None
    groups_joined: list[str]

    async def __call__(self, scope, receive, send) -> None:
        self.outbox = Outbox(send, capacity=settings.WS_BUFFER_MESSAGES, on_overflow=self._too_slow)
        self.held: list[dict[str, Any]] | None = None  # user frames held back while a bid is submitted
        self.tasks: set[asyncio.Task[None]] | None = None
        self.closing = False
        self.prepared_runs = serves_prepared_runs(scope)  # see realtime.wsnode.prepare_run
        await super().__call__(scope, receive, self.outbox.send)

    def _too_slow(self) -> None:
        """The client fell WS_BUFFER_MESSAGES frames behind; the Outbox sends the 1013 close."""
        self.closing = True
        log.info("closing a socket whose client stopped reading (1013)", extra=self.log_fields())

    def log_fields(self) -> dict[str, Any]:
        """Structured fields for this socket's log lines (core.logs): never its token."""
        return {"user_id": self.user.pk if self.user is not None else None}

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch, with a last line of defence: an exception that escapes a handler
        would end the consumer without `disconnect`, so the socket would stay in the hub's groups
        for the life of the process, and the server would log it as an application crash. A bug
        of ours is logged here instead (the client sees no traceback), the socket is closed with
        1011 (internal error), and the disconnect that follows leaves the groups as usual."""
        try:
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"no handler for message type {message['type']}")
            # Not Channels' dispatch: that one runs close_old_connections on a worker thread
            # before every message (one thread hop per client frame, ~10% of a web process's CPU
            # in the hot auction benchmark). The handlers here never touch the database on the
            # event loop; their database work runs through database_sync_to_async or the intake
            # batch, which close stale connections on the thread that holds them.
            await handler(message)
        except StopConsumer:
            raise
        except Exception:
            log.exception("socket %s failed on %s; closing it with 1011", self.scope.get("path"), message.get("type"))
            if message.get("type") == "websocket.disconnect":
                raise StopConsumer() from None
            if not self.closing:
                await self.close(code=CLOSE_INTERNAL)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        if self.tasks is None:
            self.tasks = set()
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _refuse_bad_token(self) -> bool:
        if self.scope.get("auth_error"):
            await self.close()  # before accept: the handshake is refused with HTTP 403
            return True
        return False

    @property
    def user(self):
        user = self.scope.get("user")
        return user if user is not None and user.is_authenticated else None

    async def _join(self, *groups: str) -> bool:
        """Subscribe this socket's groups; False (and the socket closed with 1013, try again
        later) when the channel layer cannot be reached: without a subscription the socket
        could not keep its promise of every event, and the client's reconnect will resume."""
        self.groups_joined = list(groups)
        if self.user is not None:
            self.groups_joined.append(user_group(self.user.pk))
        try:
            await hub().join(self, self.groups_joined)
        except Exception:
            log.warning("cannot subscribe a socket to %s; closing it with 1013", self.groups_joined, exc_info=True,
                        extra=self.log_fields())
            await self.accept()
            await self.close(code=CLOSE_TOO_SLOW)
            return False
        self.tokens = float(FRAME_BURST)
        self.tokens_at = time.monotonic()
        self.abuse: list[float] = []  # when recent `rate_limited` errors were sent
        hub().open_sockets += 1
        self.counted = True
        return True

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for task in list(getattr(self, "tasks", None) or ()):
            task.cancel()
        await hub().leave(self, getattr(self, "groups_joined", []))
        if getattr(self, "counted", False):
            self.counted = False
            hub().open_sockets -= 1

    async def _error(self, code: str, message: str, *, client_bid_id: str | None = None) -> None:
        await self.send(text_data=frames.error(code, message, client_bid_id=client_bid_id))

    async def _rate_limited(self, message: str, *, client_bid_id: str | None = None) -> None:
        now = time.monotonic()
        self.abuse = [t for t in self.abuse if now - t <= ABUSE_WINDOW_S]
        self.abuse.append(now)
        await self._error("rate_limited", message, client_bid_id=client_bid_id)
        if len(self.abuse) >= ABUSE_LIMIT:
            await self.close(code=CLOSE_POLICY)

    def _take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(FRAME_BURST), self.tokens + (now - self.tokens_at) * FRAMES_PER_SECOND)
        self.tokens_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def close(self, code=None, reason=None) -> None:
        self.closing = True
        await super().close(code=code, reason=reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return  # frames already in flight when we closed
        # The limit is on bytes; surrogatepass so that counting never raises, whatever the server hands us.
        size = len(text_data.encode("utf-8", "surrogatepass")) if text_data is not None else len(bytes_data or b"")
        if size > frames.MAX_CLIENT_FRAME:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if not self._take_token():
            await self._rate_limited("too many messages; slow down")
            return
        if text_data is None:
            # The protocol is JSON *text* frames; a binary frame is not one, whatever it holds.
            await self._error("invalid_json", "frames must be JSON text, not binary")
            return
        try:
            frame = frames.decode(text_data)
        except frames.NotJson:
            await self._error("invalid_json", "frames must be JSON text")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._error("invalid_field", "a frame is a JSON object with a string `type`")
            return
        handler = self.handlers().get(frame["type"])
        if handler is None:
            await self._error("unknown_type", f"unknown frame type {frame['type']!r}")
            return
        await handler(frame)

    def handlers(self) -> dict[str, Any]:
        return {"ping": self.on_ping}

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=frames.encode({"type": "pong", "server_time": iso(clock.now())}))

    # --- the hub's hooks: synchronous, called for every frame of this socket's groups ---

    def hub_message(self, kind: str, message: dict[str, Any], out: dict[str, Any]) -> None:
        if kind == "user.frame":
            frame = message["frame"]
            if frame.get("type") == "bid.result" and not self.wants_bid_results(frame):
                return
            if self.held is not None:
                self.held.append(out)
            else:
                self.outbox.put(out)

    def hub_events(self, first: int, outs: list[dict[str, Any]], run: dict[str, Any]) -> None:
        pass

    def wants_bid_results(self, frame: dict[str, Any]) -> bool:
        return False

    def hub_resync(self) -> None:
        pass

    def hub_behind(self, seq: int) -> bool:
        return False


class AuctionConsumer(_Base):
    """`/ws/auctions/{id}/`: snapshot, then the auction's events in seq order; bids; resume."""

    async def connect(self) -> None:
        if await self._refuse_bad_token():
            return
        self.auction_id = int(self.scope["url_route"]["kwargs"]["auction_id"])
        self.last_seq: int | None = None
        # Events that arrive while a snapshot or a refill is read wait here, in arrival order.
        self.waiting: list[tuple[int, dict[str, Any]]] | None = []
        known = self.user is None and hub().cached_snapshot(self.auction_id) is not None
        if not known and not await database_sync_to_async(snapshots.auction_exists)(self.auction_id):
            await self.accept()
            await self._error("not_found", "no such auction")
            await self.close(code=CLOSE_NOT_FOUND)
            return
        # Subscribe before reading the snapshot: whatever commits after the read is already
        # on its way to us, and whatever committed before it is in the snapshot.
        if not await self._join(auction_group(self.auction_id)):
            return
        await self.accept()
        await self._send_snapshot()
        await self._catch_up()

    async def _send_snapshot(self) -> None:
        # Anonymous viewers share the process's snapshot while it is exact (Hub.cached_snapshot).
        snap = hub().cached_snapshot(self.auction_id) if self.user is None else None
        if snap is None:
            snap = await database_sync_to_async(snapshots.auction_snapshot)(
                auction_id=self.auction_id, viewer=self.user)
            if snap is None:
                await self.close(code=CLOSE_NOT_FOUND)
                return
            if self.user is None:
                hub().remember_snapshot(self.auction_id, snap)
        self.last_seq = snap["seq"]
        await self.send(text_data=frames.encode(snapshots.restamped(snap)))

    def hub_events(self, first: int, outs: list[dict[str, Any]], run: dict[str, Any]) -> None:
        if self.closing:
            return
        if self.waiting is None and self.last_seq == first - 1 and (len(outs) == 1 or self.prepared_runs):
            self.outbox.put(run)
            self.last_seq = first + len(outs) - 1
            return
        for offset, out in enumerate(outs):
            self._event(first + offset, out)

    def _event(self, seq: int, out: dict[str, Any]) -> None:
        if self.closing:
            return
        if self.waiting is not None:
            self.waiting.append((seq, out))
            if len(self.waiting) > settings.WS_BUFFER_MESSAGES:
                counters.buffered(counters.WS_FRAMES_DROPPED, len(self.waiting), where="socket")
                counters.buffered(counters.WS_SLOW_CLOSES)
                log.info("closing a socket of auction %s that fell %d events behind", self.auction_id,
                         len(self.waiting), extra=self.log_fields())
                self.waiting.clear()
                self.closing = True
                self.outbox.put({"type": "websocket.close", "code": CLOSE_TOO_SLOW})
            return
        last = self.last_seq
        if last is None or seq <= last:
            return  # already in the snapshot or already sent
        if seq == last + 1:
            self.outbox.put(out)
            self.last_seq = seq
            return
        self.waiting = [(seq, out)]
        self._spawn(self._catch_up())

    def hub_resync(self) -> None:
        if self.waiting is None and self.last_seq is not None and not self.closing:
            self.waiting = []
            self._spawn(self._catch_up(refill=True))

    def hub_behind(self, seq: int) -> bool:
        return self.waiting is None and self.last_seq is not None and self.last_seq < seq

    async def _catch_up(self, *, refill: bool = False) -> None:
        """Send what waited, refilling any gap in front of it from the log first; until this
        returns, new events keep joining `waiting`, so nothing overtakes anything."""
        while not self.closing:
            waiting = self.waiting
            assert waiting is not None and self.last_seq is not None
            while waiting and waiting[0][0] <= self.last_seq + 1:
                seq, out = waiting.pop(0)
                if seq == self.last_seq + 1:
                    self.outbox.put(out)
                    self.last_seq = seq
            if not waiting and not refill:
                self.waiting = None
                return
            refill = False
            before = self.last_seq
            counters.buffered(counters.WS_REFILLS)
            events = await hub().events_since(self.auction_id, self.last_seq)
            if events is None:
                await self._send_snapshot()
                continue
            for seq, out in events:
                if seq == self.last_seq + 1:
                    self.outbox.put(out)
                    self.last_seq = seq
            if self.last_seq == before:
                await asyncio.sleep(0.5)  # the log does not have it yet: do not spin on the database

    def handlers(self) -> dict[str, Any]:
        return {"ping": self.on_ping, "resume": self.on_resume, "bid": self.on_bid}

    def log_fields(self) -> dict[str, Any]:
        return {**super().log_fields(), "auction_id": self.auction_id}

    def wants_bid_results(self, frame: dict[str, Any]) -> bool:
        return frame.get("bid", {}).get("auction_id") == self.auction_id

    async def on_resume(self, frame: dict[str, Any]) -> None:
        after = frame.get("after_seq")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            await self._error("invalid_field", "after_seq must be a whole number >= 0")
            return
        owner = self.waiting is None  # else a catch-up is running and sends what waits
        if owner:
            self.waiting = []
        events = await hub().events_since(self.auction_id, after)
        counters.buffered(counters.WS_RESUMES, answer="snapshot" if events is None else "events")
        log.debug("resume of auction %s after seq %s: %s", self.auction_id, after,
                  "a snapshot" if events is None else f"{len(events)} events",
                  extra={**self.log_fields(), "after_seq": after})
        if events is None:
            await self._send_snapshot()
        else:
            for seq, out in events:
                self.outbox.put(out)
                self.last_seq = max(self.last_seq or 0, seq)
        if owner:
            await self._catch_up()

    async def on_bid(self, frame: dict[str, Any]) -> None:
        client_bid_id = frame.get("client_bid_id")
        echo = client_bid_id if isinstance(client_bid_id, str) else None
        if self.user is None:
            await self._error("not_authenticated", "log in to bid", client_bid_id=echo)
            return
        if client_bid_id is not None and not isinstance(client_bid_id, str):
            await self._error("invalid_field", "client_bid_id must be a string")
            return
        # Its bid.result may be decided and published before bid.queued is out: hold it back.
        self.held = []
        try:
            result = await bid_intake().submit(services.Submission(
                auction_id=self.auction_id, user=self.user, amount=frame.get("amount"),
                max_amount=frame.get("max_amount"), client_bid_id=client_bid_id, channel="ws", rate_limited=True,
            ))
        except ServiceError as exc:
            if exc.code == "rate_limited":
                await self._rate_limited(exc.message, client_bid_id=echo)
            else:
                await self._error(exc.code, exc.message, client_bid_id=echo)
            return
        except UNAVAILABLE as exc:
            # PostgreSQL or Redis down or restarting: nothing was acknowledged; the socket stays
            # open and the client sends the bid again (same client_bid_id: nothing twice).
            log.warning("socket bid on auction %s: a backing service is unavailable: %s: %s",
                        self.auction_id, type(exc).__name__, str(exc)[:200])
            await self._error("unavailable", "the service is briefly unavailable; send the bid again",
                              client_bid_id=echo)
            return
        else:
            bid, created = result
            await self.send(text_data=frames.encode({"type": "bid.queued", "bid": bid}))
            if not created and bid["status"] != "queued":
                # A repeated client_bid_id whose bid was decided already: its result will not
                # be published again, so answer it here.
                await self.send(text_data=frames.encode({"type": "bid.result", "bid": bid}))
        finally:
            held, self.held = self.held, None
            for out in held:
                self.outbox.put(out)


class LobbyConsumer(_Base):
    """`/ws/lobby/`: live and scheduled auctions, then every change to any auction."""

    async def connect(self) -> None:
        if await self._refuse_bad_token():
            return
        if not await self._join(LOBBY_GROUP):
            return
        await self.accept()
        await self._send_snapshot()

    async def _send_snapshot(self) -> None:
        snap = await database_sync_to_async(snapshots.lobby_snapshot)()
        await self.send(text_data=frames.encode(snap))

    def hub_message(self, kind: str, message: dict[str, Any], out: dict[str, Any]) -> None:
        if kind == "lobby.auction":
            self.outbox.put(out)
        else:
            super().hub_message(kind, message, out)

    def hub_resync(self) -> None:
        # Lobby changes carry no seq: after a loss, a fresh snapshot is the repair.
        if not self.closing:
            self._spawn(self._send_snapshot())

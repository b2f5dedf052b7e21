"""The browser client's room socket, ported to asyncio for load clients that must lose and regain
their connection exactly as a browser running realtime/static/realtime/gavel.js does.

What is ported, with the gavel.js names:
- `backoffDelay`: 0.5 s doubling to 10 s, drawn from the upper half of each step ("equal jitter").
- `ReconnectingSocket`: `_connect`, `_opened` (a ping at once, then one every 15 s; a ping still
  unanswered when the next one is due drops the connection), `_lost` (4404 is final, any other
  close schedules a reconnect), `_drop`, `_scheduleReconnect` (the attempt count starts over only
  when the lost connection had been live for at least maxMs, 10 s; a flapping one keeps growing).
- `AuctionSocket`: `_snapshot` (every snapshot, the first and each reconnect's, replaces the
  state: gavel.js does NOT resume a new connection from its last seq), `_event` (stale: ignored;
  next: applied; gap: ignored, `resume` after the state's seq, and a reconnect if the gap is not
  closed within catchUpTimeoutMs, 10 s).

What is left out: bidding and resending pending bids (these sockets only watch), the browser's
`online` event, the clock offset, and folding an event's data: only the seq is followed, plus
what the benchmark's checks compare. A browser's WebSocket has no connect timeout of its own
(the TCP stack gives up after minutes); `connect_timeout` bounds an attempt here, and an attempt
that runs out counts as a loss (1006), as the browser's eventual give-up would.

The WebSocket itself is bench/hot_auction.py's WsProto (RFC 6455 by hand).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter

from bench.hot_auction import WsProto

BACKOFF_INITIAL_MS = 500
BACKOFF_MAX_MS = 10_000
PING_INTERVAL_S = 15.0
CATCH_UP_TIMEOUT_S = 10.0
CLOSE_ABNORMAL = 1006
CLOSE_NOT_FOUND = 4404


def backoff_delay_ms(attempt: int, rnd: float, initial_ms: int = BACKOFF_INITIAL_MS,
                     max_ms: int = BACKOFF_MAX_MS) -> int:
    """gavel.js backoffDelay (JavaScript's Math.round rounds halves up)."""
    step = min(max_ms, initial_ms * 2**attempt)
    return math.floor(step / 2 + (step / 2) * rnd + 0.5)


class Observer:
    """What the benchmark hears from its rooms (all no-ops here)."""

    def live(self, room: RoomSocket, now: float) -> None:
        pass

    def lost(self, room: RoomSocket, now: float, code: int) -> None:
        pass

    def connect_error(self, room: RoomSocket, kind: str) -> None:
        pass


class Connection:
    """One connection's record: its snapshot (time, seq, price, bid count), the seq of the last
    event it applied and how many it applied, and the event frames it ignored (stale: seq already
    reflected; gap: seq past the next one)."""

    __slots__ = ("t_snapshot", "snap_seq", "price", "bid_count", "last", "applied", "stale", "gaps")

    def __init__(self, t: float, snapshot: dict) -> None:
        auction = snapshot.get("auction") or {}
        self.t_snapshot = t
        self.snap_seq = snapshot["seq"]
        self.price = auction.get("current_price")
        self.bid_count = auction.get("bid_count")
        self.last = self.snap_seq
        self.applied = self.stale = self.gaps = 0

    def row(self) -> tuple:
        return (self.t_snapshot, self.snap_seq, self.price, self.bid_count, self.last, self.applied, self.stale,
                self.gaps)


class _Wire(WsProto):
    """WsProto with the hooks a browser WebSocket has: onopen once the handshake is done, every
    text frame to onmessage (the first one included), onclose with the close code."""

    def __init__(self, room: RoomSocket, host: str, port: int, path: str) -> None:
        super().__init__(host, port, path)
        self.room = room
        self.announced = False
        self.close_code = CLOSE_ABNORMAL

    def _announce(self) -> None:
        if not self.announced:
            self.announced = True
            self.room._opened(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.phase in ("snapshot", "open"):
            self._announce()

    def on_text(self, text: str) -> None:
        if self.phase == "snapshot":
            self._announce()
            self.phase = "open"  # from here on, a loss is reported through on_gone
            if not self.opened.done():
                self.opened.set_result(self)
        if self.phase == "open":
            self.room._received(self, text)

    def on_close(self, code: int, reason: str) -> None:
        self.close_code = CLOSE_ABNORMAL if code == 1005 else code
        super().on_close(code, reason)

    def on_gone(self, why: str) -> None:
        self.room._gone(self, self.close_code)

    @property
    def ready(self) -> bool:
        """readyState === OPEN."""
        return self.phase in ("snapshot", "open") and self.transport is not None and not self.transport.is_closing()


class RoomSocket:
    """One watcher of /ws/auctions/{id}/ that reconnects as gavel.js's AuctionSocket does.
    connect() starts it; close() stops it for good."""

    def __init__(self, host: str, port: int, auction_id: int, *, observer: Observer, rnd: random.Random,
                 connect_timeout: float, errors: Counter) -> None:
        self.host, self.port, self.auction_id = host, port, auction_id
        self.path = f"/ws/auctions/{auction_id}/"
        self.observer = observer
        self.rnd = rnd
        self.connect_timeout = connect_timeout
        self.errors = errors
        self.loop = asyncio.get_running_loop()
        self.ws: _Wire | None = None
        self.closed = False
        self.status: str | None = None
        self.attempt = 0
        self.live_since: float | None = None
        self.pings: list[float] = []
        self.ping_timer: asyncio.TimerHandle | None = None
        self.reconnect_timer: asyncio.TimerHandle | None = None
        self.catch_up_timer: asyncio.TimerHandle | None = None
        self.highest_seen = 0
        self.synced = False
        self.seq: int | None = None  # the state's seq
        # the benchmark's record
        self.connections: list[Connection] = []
        self.losses: list[tuple[float, int]] = []
        self.attempts: list[float] = []  # when each connection attempt started

    # --- lifecycle (ReconnectingSocket) ---

    def connect(self) -> None:
        self.reconnect_timer = None
        if self.closed:
            return
        if self.status is None:
            self.status = "connecting"
        ws = _Wire(self, self.host, self.port, self.path)
        self.ws = ws
        self.pings = []
        self.synced = False
        self.attempts.append(time.time())
        self.loop.create_task(self._open(ws))

    async def _open(self, ws: _Wire) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.loop.create_connection(lambda: ws, self.host, self.port)
                await ws.opened
        except Exception as exc:  # noqa: BLE001 - every failed attempt is a close event for the page
            if isinstance(exc, TimeoutError):
                kind = "timeout"
            elif type(exc) is ConnectionError:  # WsProto's own: the handshake, a loss or a close before a frame
                kind = str(exc)[:60]
            else:
                kind = type(exc).__name__
            self.errors[kind] += 1
            self.observer.connect_error(self, kind)
            if not ws.opened.done():
                ws.opened.cancel()  # nobody awaits it any more
            if ws.transport is not None:
                ws.transport.abort()
            if ws is self.ws:
                self._lost(ws.close_code)

    def _opened(self, ws: _Wire) -> None:
        if ws is not self.ws:
            return
        self._ping()
        self._schedule_ping()

    def _gone(self, ws: _Wire, code: int) -> None:
        if ws is self.ws:
            self._lost(code)

    def _lost(self, code: int) -> None:
        self._detach()
        if self.closed:
            return
        now = time.time()
        self.losses.append((now, code))
        self.observer.lost(self, now, code)
        if code == CLOSE_NOT_FOUND:
            self.closed = True
            self.status = "closed"
            return
        self.status = "reconnecting"
        self._schedule_reconnect()

    def _drop(self, reason: str) -> None:
        ws = self.ws
        self._lost(CLOSE_ABNORMAL)
        if ws is not None:
            ws.close(4000)

    def _detach(self) -> None:
        self.ws = None
        if self.ping_timer is not None:
            self.ping_timer.cancel()
        self.ping_timer = None
        self.pings = []
        self.synced = False
        self._stop_catch_up()

    def _schedule_reconnect(self) -> None:
        now = time.time()
        if self.live_since is not None and (now - self.live_since) * 1000 >= BACKOFF_MAX_MS:
            self.attempt = 0
        self.live_since = None
        delay = backoff_delay_ms(self.attempt, self.rnd.random())
        self.attempt += 1
        self.reconnect_timer = self.loop.call_later(delay / 1000, self.connect)

    def abort(self) -> None:
        """The client's network drops the connection (no close frame): the page sees 1006."""
        if self.ws is not None and self.ws.transport is not None:
            self.ws.transport.abort()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.reconnect_timer is not None:
            self.reconnect_timer.cancel()
        ws = self.ws
        self._detach()
        if ws is not None:
            ws.close(1000)
        self.status = "closed"

    def _mark_live(self, now: float) -> None:
        self.live_since = now
        self.status = "live"

    # --- frames ---

    def _send(self, frame: dict) -> bool:
        ws = self.ws
        if ws is None or not ws.ready:
            return False
        ws.send_text(json.dumps(frame))
        return True

    def _received(self, ws: _Wire, text: str) -> None:
        if ws is not self.ws:
            return
        try:
            frame = json.loads(text)
        except ValueError:
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return
        kind = frame["type"]
        if kind == "pong":
            if self.pings:
                self.pings.pop(0)
        elif kind == "snapshot":
            self._snapshot(frame, ws.now)
        elif kind == "event":
            self._event(frame.get("event"))

    def _schedule_ping(self) -> None:
        self.ping_timer = self.loop.call_later(PING_INTERVAL_S, self._ping_due)

    def _ping_due(self) -> None:
        self.ping_timer = None
        if self.pings:
            self._drop("no pong")
            return
        self._ping()
        self._schedule_ping()

    def _ping(self) -> None:
        if self._send({"type": "ping"}):
            self.pings.append(time.time())

    # --- the stream (AuctionSocket) ---

    def _snapshot(self, frame: dict, now: float) -> None:
        self._stop_catch_up()
        self.seq = frame["seq"]
        self.synced = True
        self.connections.append(Connection(now, frame))
        self._mark_live(now)
        self.observer.live(self, now)

    def _event(self, event) -> None:
        if not self.synced or self.seq is None or not isinstance(event, dict):
            return
        seq = event.get("seq")
        if not isinstance(seq, int):
            return
        conn = self.connections[-1]
        if seq <= self.seq:
            conn.stale += 1
            return
        if seq > self.seq + 1:
            conn.gaps += 1
            self.highest_seen = max(self.highest_seen, seq)
            if self.status != "catching_up":
                self._start_catch_up()
            return
        self.seq = seq
        conn.last = seq
        conn.applied += 1
        if self.status == "catching_up" and seq >= self.highest_seen:
            self._stop_catch_up()
            self.status = "live"

    def _start_catch_up(self) -> None:
        self._send({"type": "resume", "after_seq": self.seq})
        self.status = "catching_up"
        self.catch_up_timer = self.loop.call_later(CATCH_UP_TIMEOUT_S, self._catch_up_expired)

    def _catch_up_expired(self) -> None:
        self.catch_up_timer = None
        self._drop("resume did not close the gap")

    def _stop_catch_up(self) -> None:
        self.highest_seen = 0
        if self.catch_up_timer is not None:
            self.catch_up_timer.cancel()
        self.catch_up_timer = None

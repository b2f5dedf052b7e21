// Tests for gavel.js: `node --test realtime/static/realtime/` (Node 20+, no dependencies).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  AuctionSocket,
  BidError,
  LobbySocket,
  SeqGapError,
  applyEvent,
  applyLobbyAuction,
  applyOwnBid,
  backoffDelay,
  classifyEvent,
  clockOffset,
  lobbyFromSnapshot,
  remainingMs,
  serverNow,
  stateFromSnapshot,
} from "./gavel.js";

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

const T0 = Date.parse("2026-03-01T12:00:00.000Z");
const iso = (ms) => new Date(ms).toISOString();

function auction(overrides = {}) {
  return {
    id: 7, title: "Brass telescope", description: "", status: "live", seller: "sam",
    starts_at: iso(T0 - 60_000), ends_at: iso(T0 + 300_000), starting_price: 10, min_increment: 5,
    buy_now_price: null, reserve_met: null, extend_window_s: 30, extend_by_s: 30, current_price: null,
    leader: null, min_next_bid: 10, bid_count: 0, seq: 1, winner: null, final_price: null,
    server_time: iso(T0), my_max: null, is_leader: false, ...overrides,
  };
}

function snapshot(overrides = {}, leaderboard = [], seq = overrides.seq ?? 1) {
  return { type: "snapshot", auction: auction({ seq, ...overrides }), leaderboard, seq, server_time: iso(T0) };
}

function accepted(seq, data) {
  return {
    seq, type: "bid.accepted", at: iso(T0 + seq),
    data: { bid_id: seq, proxy: false, ends_at: iso(T0 + 300_000), reserve_met: null, ...data },
  };
}

// The contract's proxy example, increment 5: A bids 20 with max 100, then B bids 50; A's proxy answers at 55.
const A_BIDS_20 = accepted(2, { bidder: "A", amount: 20, current_price: 20, leader: "A", min_next_bid: 25, bid_count: 1 });
const B_BIDS_50 = accepted(3, { bidder: "B", amount: 50, current_price: 55, leader: "A", min_next_bid: 60, bid_count: 3 });
const A_PROXY_55 = accepted(4, {
  bid_id: 2, bidder: "A", amount: 55, proxy: true, current_price: 55, leader: "A", min_next_bid: 60, bid_count: 3,
});
const eventFrame = (event) => ({ type: "event", event });

function fold(state, events, options) {
  return events.reduce((s, e) => applyEvent(s, e, options), state);
}

function deepFreeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Timers driven by hand; `now` is the same clock. */
class FakeTimers {
  constructor(start) {
    this.time = start;
    this.nextId = 1;
    this.queue = new Map();
    this.now = () => this.time;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.queue.set(id, { at: this.time + ms, fn });
      return id;
    };
    this.clearTimeout = (id) => this.queue.delete(id);
  }

  /** Move the clock forward, running due timers in order. */
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.queue) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      if (!next) break;
      this.queue.delete(next[0]);
      this.time = next[1].at;
      next[1].fn();
    }
    this.time = end;
  }
}

/** An in-memory WebSocket: the test plays the server (open, push, serverClose) and reads `sent`. */
function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }

    send(text) {
      assert.equal(this.readyState, 1, "send on a socket that is not open");
      this.sent.push(JSON.parse(text));
    }

    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.readyState = 3;
      this.closedWith = { code, reason };
      this.onclose?.({ code, reason, wasClean: true });
    }

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    push(frame) {
      this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }

    /** The server (or the network) ends the connection; like a browser, error comes before close. */
    serverClose(code = 1006) {
      this.readyState = 3;
      if (code === 1006) this.onerror?.({});
      this.onclose?.({ code, reason: "", wasClean: code !== 1006 });
    }

    sentOf(type) {
      return this.sent.filter((f) => f.type === type);
    }
  }
  FakeWebSocket.sockets = sockets;
  return FakeWebSocket;
}

/** An AuctionSocket on fakes, with everything it reports recorded. */
function room(options = {}) {
  const timers = new FakeTimers(T0);
  const WebSocketImpl = fakeWebSocketClass();
  const log = { states: [], statuses: [], frames: [] };
  const socket = new AuctionSocket({
    url: "wss://gavel.test/", auctionId: 7, WebSocketImpl,
    now: timers.now, setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout, random: () => 0.5,
    onState: (state, event) => log.states.push({ state, event }),
    onStatus: (status) => log.statuses.push(status),
    onFrame: (frame) => log.frames.push(frame),
    ...options,
  });
  return {
    socket, timers, log, WebSocketImpl,
    get ws() { return WebSocketImpl.sockets.at(-1); },
    /** Open the current connection and send it a snapshot. */
    connect(frame = snapshot()) {
      this.ws.open();
      this.ws.push(frame);
      return this.ws;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// The stream model
// ---------------------------------------------------------------------------------------------------------

describe("applyEvent", () => {
  test("the contract's proxy example ends with A leading at 55 and B second at 50", () => {
    const state = fold(stateFromSnapshot(snapshot()), [A_BIDS_20, B_BIDS_50, A_PROXY_55]);
    assert.equal(state.seq, 4);
    assert.equal(state.auction.seq, 4);
    assert.equal(state.auction.current_price, 55);
    assert.equal(state.auction.leader, "A");
    assert.equal(state.auction.min_next_bid, 60);
    assert.equal(state.auction.bid_count, 3);
    assert.deepEqual(state.leaderboard, [
      { rank: 1, username: "A", amount: 55 },
      { rank: 2, username: "B", amount: 50 },
    ]);
  });

  test("after the challenger's event alone the board ranks by shown amount, not by leader", () => {
    const state = fold(stateFromSnapshot(snapshot()), [A_BIDS_20, B_BIDS_50]);
    assert.equal(state.auction.leader, "A");
    assert.deepEqual(state.leaderboard, [
      { rank: 1, username: "B", amount: 50 },
      { rank: 2, username: "A", amount: 20 },
    ]);
  });

  test("bid.accepted copies every price field from the event", () => {
    const event = accepted(2, {
      bidder: "A", amount: 120, current_price: 120, leader: "A", min_next_bid: 125, bid_count: 1,
      ends_at: iso(T0 + 330_000), reserve_met: true,
    });
    const { auction: a } = applyEvent(stateFromSnapshot(snapshot({ reserve_met: false })), event);
    assert.deepEqual(
      [a.current_price, a.leader, a.min_next_bid, a.bid_count, a.ends_at, a.reserve_met],
      [120, "A", 125, 1, iso(T0 + 330_000), true],
    );
  });

  test("a bidder's leaderboard amount never goes down", () => {
    const start = stateFromSnapshot(snapshot({}, [{ rank: 1, username: "A", amount: 80 }]));
    const state = applyEvent(start, accepted(2, { bidder: "A", amount: 60, current_price: 80, leader: "A", min_next_bid: 85, bid_count: 2 }));
    assert.deepEqual(state.leaderboard, [{ rank: 1, username: "A", amount: 80 }]);
  });

  test("the leader comes first on a tie, other ties keep their order", () => {
    const board = [
      { rank: 1, username: "C", amount: 70 },
      { rank: 2, username: "D", amount: 40 },
      { rank: 3, username: "E", amount: 40 },
    ];
    const start = stateFromSnapshot(snapshot({ leader: "C", current_price: 70 }, board, 5));
    const state = applyEvent(start, accepted(6, { bidder: "F", amount: 70, current_price: 70, leader: "F", min_next_bid: 75, bid_count: 4 }));
    assert.deepEqual(state.leaderboard.map((e) => [e.rank, e.username, e.amount]), [
      [1, "F", 70], [2, "C", 70], [3, "D", 40], [4, "E", 40],
    ]);
  });

  test("auction.started makes the auction live with its end time", () => {
    const start = stateFromSnapshot(snapshot({ status: "scheduled" }, [], 0));
    const state = applyEvent(start, { seq: 1, type: "auction.started", at: iso(T0), data: { ends_at: iso(T0 + 60_000) } });
    assert.equal(state.auction.status, "live");
    assert.equal(state.auction.ends_at, iso(T0 + 60_000));
    assert.equal(state.seq, 1);
  });

  test("auction.extended moves ends_at only", () => {
    const start = stateFromSnapshot(snapshot());
    const state = applyEvent(start, { seq: 2, type: "auction.extended", at: iso(T0), data: { ends_at: iso(T0 + 999_000) } });
    assert.equal(state.auction.ends_at, iso(T0 + 999_000));
    assert.deepEqual({ ...state.auction, ends_at: null, seq: null }, { ...start.auction, ends_at: null, seq: null });
  });

  test("auction.ended sets status, winner, final price and reserve_met", () => {
    const start = fold(stateFromSnapshot(snapshot()), [A_BIDS_20, B_BIDS_50, A_PROXY_55]);
    const state = applyEvent(start, { seq: 5, type: "auction.ended", at: iso(T0), data: { winner: "A", final_price: 55, reserve_met: null } });
    assert.deepEqual(
      [state.auction.status, state.auction.winner, state.auction.final_price, state.auction.reserve_met],
      ["ended", "A", 55, null],
    );
    assert.equal(state.leaderboard, start.leaderboard);
  });

  test("auction.cancelled sets the status", () => {
    const state = applyEvent(stateFromSnapshot(snapshot()), { seq: 2, type: "auction.cancelled", at: iso(T0), data: {} });
    assert.equal(state.auction.status, "cancelled");
  });

  test("an unknown event type only advances seq", () => {
    const start = stateFromSnapshot(snapshot());
    const state = applyEvent(start, { seq: 2, type: "auction.renamed", at: iso(T0), data: { title: "x" } });
    assert.equal(state.seq, 2);
    assert.equal(state.auction.title, start.auction.title);
  });

  test("an event already reflected returns the very same state", () => {
    const state = fold(stateFromSnapshot(snapshot()), [A_BIDS_20, B_BIDS_50]);
    assert.equal(applyEvent(state, B_BIDS_50), state);
    assert.equal(applyEvent(state, A_BIDS_20), state);
  });

  test("an event past a gap throws SeqGapError", () => {
    const state = stateFromSnapshot(snapshot());
    assert.throws(() => applyEvent(state, A_PROXY_55), (err) => {
      assert.ok(err instanceof SeqGapError);
      assert.equal(err.expected, 2);
      assert.equal(err.received, 4);
      return true;
    });
  });

  test("the input state is never modified", () => {
    const start = deepFreeze(stateFromSnapshot(snapshot()));
    const state = fold(start, [A_BIDS_20, B_BIDS_50, A_PROXY_55]);
    assert.equal(start.seq, 1);
    assert.deepEqual(start.leaderboard, []);
    assert.notEqual(state.auction, start.auction);
  });

  test("is_leader follows the leader when the viewer is known", () => {
    const start = stateFromSnapshot(snapshot());
    const asB = fold(start, [A_BIDS_20, B_BIDS_50], { viewer: "B" });
    assert.equal(asB.auction.is_leader, false);
    const asA = fold(start, [A_BIDS_20], { viewer: "A" });
    assert.equal(asA.auction.is_leader, true);
  });

  test("without a viewer is_leader can only turn false when someone else leads", () => {
    const start = stateFromSnapshot(snapshot({ leader: "A", is_leader: true, current_price: 20 }));
    const stillA = applyEvent(start, accepted(2, { bidder: "A", amount: 25, current_price: 25, leader: "A", min_next_bid: 30, bid_count: 2 }));
    assert.equal(stillA.auction.is_leader, true);
    const nowC = applyEvent(stillA, accepted(3, { bidder: "C", amount: 300, current_price: 300, leader: "C", min_next_bid: 305, bid_count: 3 }));
    assert.equal(nowC.auction.is_leader, false);
  });
});

describe("classifyEvent", () => {
  test("says stale, next or gap", () => {
    const state = stateFromSnapshot(snapshot({}, [], 3));
    assert.equal(classifyEvent(state, { seq: 2 }), "stale");
    assert.equal(classifyEvent(state, { seq: 3 }), "stale");
    assert.equal(classifyEvent(state, { seq: 4 }), "next");
    assert.equal(classifyEvent(state, { seq: 6 }), "gap");
  });

  test("refuses an event without an integer seq", () => {
    assert.throws(() => classifyEvent(stateFromSnapshot(snapshot()), { seq: "2" }), TypeError);
  });
});

describe("applyOwnBid", () => {
  const bid = (overrides) => ({ bid_id: 1, client_bid_id: "c", auction_id: 7, bidder: "A", amount: 20, max_amount: 100, status: "accepted", ...overrides });

  test("an accepted bid raises my_max", () => {
    const state = applyOwnBid(stateFromSnapshot(snapshot()), bid());
    assert.equal(state.auction.my_max, 100);
    assert.equal(applyOwnBid(stateFromSnapshot(snapshot()), bid({ max_amount: null })).auction.my_max, 20);
  });

  test("a rejected bid, a lower max or another auction's bid changes nothing", () => {
    const start = stateFromSnapshot(snapshot({ my_max: 100 }));
    assert.equal(applyOwnBid(start, bid({ status: "rejected", max_amount: 500 })), start);
    assert.equal(applyOwnBid(start, bid({ max_amount: 90 })), start);
    assert.equal(applyOwnBid(start, bid({ auction_id: 8, max_amount: 500 })), start);
  });
});

describe("clock", () => {
  test("the offset is measured from the midpoint of the round trip", () => {
    // Sent at 1000, back at 1200 (client clock); the server read 5100 at the midpoint (client 1100).
    assert.equal(clockOffset(iso(5100), 1000, 1200), 4000);
    assert.equal(clockOffset(iso(T0 - 250), T0, T0 + 100), -300);
  });

  test("clockOffset refuses a time it cannot read", () => {
    assert.throws(() => clockOffset("soon", 0, 1), TypeError);
  });

  test("serverNow adds the offset to the client clock", () => {
    assert.equal(serverNow(4000, 1000), 5000);
    assert.equal(serverNow(undefined, 1000), 1000);
  });

  test("remainingMs counts down by the server clock and stops at zero", () => {
    const endsAt = iso(T0 + 10_000);
    assert.equal(remainingMs(endsAt, 0, T0), 10_000);
    assert.equal(remainingMs(endsAt, 3_000, T0), 7_000); // the server is 3 s ahead
    assert.equal(remainingMs(endsAt, 0, T0 + 60_000), 0);
    assert.equal(remainingMs(null, 0, T0), null);
  });
});

describe("backoffDelay", () => {
  test("doubles from 0.5 s to 10 s, jittered within the upper half of each step", () => {
    const backoff = { initialMs: 500, maxMs: 10_000 };
    const highs = [0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, backoff, 0.999999));
    assert.deepEqual(highs, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
    const lows = [0, 1, 5].map((n) => backoffDelay(n, backoff, 0));
    assert.deepEqual(lows, [250, 500, 5000]);
  });
});

describe("lobby model", () => {
  const item = (id, overrides = {}) => auction({ id, seq: 1, ...overrides });

  test("the snapshot keeps live and scheduled auctions by id", () => {
    const lobby = lobbyFromSnapshot({ type: "snapshot", auctions: [item(1), item(2, { status: "scheduled" }), item(3, { status: "ended" })] });
    assert.deepEqual([...lobby.auctions.keys()], [1, 2]);
  });

  test("updates replace, finished auctions leave and cannot come back, stale frames are ignored", () => {
    let lobby = lobbyFromSnapshot({ type: "snapshot", auctions: [item(1, { seq: 3 })] });
    const same = lobby;
    assert.equal(applyLobbyAuction(lobby, item(1, { seq: 2, current_price: 5 })), same);

    lobby = applyLobbyAuction(lobby, item(1, { seq: 4, current_price: 40 }));
    assert.equal(lobby.auctions.get(1).current_price, 40);
    lobby = applyLobbyAuction(lobby, item(9, { seq: 0, status: "scheduled" }));
    assert.deepEqual([...lobby.auctions.keys()], [1, 9]);

    lobby = applyLobbyAuction(lobby, item(1, { seq: 6, status: "ended" }));
    assert.deepEqual([...lobby.auctions.keys()], [9]);
    const ended = lobby;
    assert.equal(applyLobbyAuction(ended, item(1, { seq: 5, current_price: 45 })), ended);
    assert.equal(applyLobbyAuction(ended, item(1, { seq: 6, status: "ended" })), ended);
  });
});

// ---------------------------------------------------------------------------------------------------------
// AuctionSocket
// ---------------------------------------------------------------------------------------------------------

describe("AuctionSocket", () => {
  test("connects to the room's path, with the token when there is one", () => {
    assert.equal(room().ws.url, "wss://gavel.test/ws/auctions/7/");
    assert.equal(room({ token: "a b/c" }).ws.url, "wss://gavel.test/ws/auctions/7/?token=a%20b%2Fc");
    let n = 0;
    const r = room({ token: () => `t${++n}` });
    assert.equal(r.ws.url, "wss://gavel.test/ws/auctions/7/?token=t1");
  });

  test("folds the snapshot then the events, ignoring repeats", () => {
    const r = room();
    assert.deepEqual(r.log.statuses, ["connecting"]);
    r.ws.open();
    assert.deepEqual(r.log.statuses, ["connecting"], "not live before the snapshot");
    r.ws.push(snapshot());
    assert.deepEqual(r.log.statuses, ["connecting", "live"]);
    assert.equal(r.log.states.length, 1);
    assert.equal(r.log.states[0].event, null);

    for (const e of [A_BIDS_20, B_BIDS_50, B_BIDS_50, A_PROXY_55, A_BIDS_20]) r.ws.push(eventFrame(e));
    assert.deepEqual(r.log.states.map((s) => s.event?.seq ?? null), [null, 2, 3, 4]);
    assert.equal(r.socket.state.seq, 4);
    assert.deepEqual(r.socket.state.leaderboard.map((e) => [e.username, e.amount]), [["A", 55], ["B", 50]]);
    assert.deepEqual(r.log.frames, []);
  });

  test("a gap sends resume, reports catching_up, and goes live once the missing events are in", () => {
    const r = room();
    const ws = r.connect();
    ws.push(eventFrame(A_PROXY_55)); // 2 and 3 are missing
    assert.deepEqual(ws.sentOf("resume"), [{ type: "resume", after_seq: 1 }]);
    assert.equal(r.socket.status, "catching_up");
    assert.equal(r.socket.state.seq, 1, "the out-of-order event is not applied");

    const later = accepted(5, { bidder: "C", amount: 300, current_price: 300, leader: "C", min_next_bid: 305, bid_count: 4 });
    ws.push(eventFrame(later)); // still out of order: ignored, no second resume
    assert.equal(ws.sentOf("resume").length, 1);

    ws.push(eventFrame(A_BIDS_20));
    ws.push(eventFrame(B_BIDS_50));
    assert.equal(r.socket.status, "catching_up");
    ws.push(eventFrame(A_PROXY_55));
    assert.equal(r.socket.status, "catching_up", "5 was seen and is still missing");
    ws.push(eventFrame(later));
    assert.equal(r.socket.status, "live");
    assert.deepEqual(r.log.statuses, ["connecting", "live", "catching_up", "live"]);
    assert.equal(r.socket.state.auction.current_price, 300);
    assert.deepEqual(r.log.states.map((s) => s.event?.seq ?? null), [null, 2, 3, 4, 5]);

    ws.push(eventFrame(later)); // the live copy of a resumed event
    assert.equal(r.log.states.length, 5);
  });

  test("a resume answered with a fresh snapshot takes the snapshot", () => {
    const r = room();
    const ws = r.connect();
    ws.push(eventFrame(accepted(2000, { bidder: "Z", amount: 900, current_price: 900, leader: "Z", min_next_bid: 905, bid_count: 999 })));
    assert.equal(r.socket.status, "catching_up");
    ws.push(snapshot({ current_price: 900, leader: "Z" }, [{ rank: 1, username: "Z", amount: 900 }], 2000));
    assert.equal(r.socket.status, "live");
    assert.equal(r.socket.state.seq, 2000);
    assert.equal(r.socket.state.auction.leader, "Z");
  });

  test("a resume that never closes the gap ends in a reconnect", () => {
    const r = room({ catchUpTimeoutMs: 5000, pingIntervalMs: 60_000 });
    const first = r.connect();
    first.push(eventFrame(A_PROXY_55));
    r.timers.advance(5000);
    assert.equal(r.socket.status, "reconnecting");
    assert.equal(first.closedWith?.code, 4000);
    r.timers.advance(375);
    assert.equal(r.WebSocketImpl.sockets.length, 2);
    r.connect(snapshot({ current_price: 55, leader: "A" }, [], 4));
    assert.equal(r.socket.status, "live");
    assert.equal(r.socket.state.seq, 4);
  });

  test("a lost connection reconnects with growing backoff and takes the new snapshot; nothing is applied twice", () => {
    const r = room();
    const first = r.connect();
    first.push(eventFrame(A_BIDS_20));
    first.serverClose(1006);
    assert.equal(r.socket.status, "reconnecting");
    assert.equal(r.socket.state.seq, 2, "the last state stays on screen while reconnecting");

    // random() = 0.5: 375 ms, then 750 ms, then 1500 ms...
    r.timers.advance(374);
    assert.equal(r.WebSocketImpl.sockets.length, 1);
    r.timers.advance(1);
    assert.equal(r.WebSocketImpl.sockets.length, 2);
    r.ws.serverClose(1006); // the handshake fails
    r.timers.advance(749);
    assert.equal(r.WebSocketImpl.sockets.length, 2);
    r.timers.advance(1);
    assert.equal(r.WebSocketImpl.sockets.length, 3);
    r.ws.serverClose(1013);
    r.timers.advance(1500);
    assert.equal(r.WebSocketImpl.sockets.length, 4);

    // Events 3 and 4 happened while we were away; the snapshot reflects them.
    const ws = r.connect(snapshot({ current_price: 55, leader: "A", bid_count: 3 }, [
      { rank: 1, username: "A", amount: 55 }, { rank: 2, username: "B", amount: 50 },
    ], 4));
    assert.equal(r.socket.status, "live");
    assert.equal(r.socket.state.seq, 4);
    const statesBefore = r.log.states.length;
    const straggler = { seq: 5, type: "auction.cancelled", at: iso(T0), data: {} };
    first.push(eventFrame(straggler)); // a dead socket can say nothing more
    ws.push(eventFrame(A_PROXY_55)); // already in the snapshot
    assert.equal(r.log.states.length, statesBefore);
    const next = { seq: 5, type: "auction.extended", at: iso(T0), data: { ends_at: iso(T0 + 400_000) } };
    ws.push(eventFrame(next));
    assert.equal(r.socket.state.auction.status, "live");
    assert.equal(r.socket.state.seq, 5);
    assert.equal(r.socket.state.auction.ends_at, iso(T0 + 400_000));
    assert.deepEqual(r.log.statuses, ["connecting", "live", "reconnecting", "live"]);
  });

  test("the backoff starts over after a connection that stayed up", () => {
    const r = room({ pingIntervalMs: 1e9 });
    r.connect();
    r.ws.serverClose();
    r.timers.advance(375);
    r.ws.serverClose();
    r.timers.advance(750);
    r.connect();
    r.timers.advance(60_000);
    r.ws.serverClose();
    r.timers.advance(375);
    assert.equal(r.WebSocketImpl.sockets.length, 4);
  });

  test("close() by the page stops for good and fails pending bids", async () => {
    const r = room();
    const ws = r.connect();
    const pending = r.socket.bid({ amount: 20 });
    r.socket.close();
    assert.equal(r.socket.status, "closed");
    assert.equal(ws.closedWith?.code, 1000);
    await assert.rejects(pending, (err) => err instanceof BidError && err.code === "closed");
    await assert.rejects(r.socket.bid({ amount: 25 }), (err) => err.code === "closed");
    r.timers.advance(60_000);
    assert.equal(r.WebSocketImpl.sockets.length, 1);
  });

  test("4404 means no such auction: closed, no reconnect", () => {
    const r = room();
    r.ws.open();
    r.ws.push({ type: "error", code: "not_found", message: "no such auction" });
    r.ws.serverClose(4404);
    assert.equal(r.socket.status, "closed");
    assert.deepEqual(r.log.frames.map((f) => f.code), ["not_found"]);
    r.timers.advance(60_000);
    assert.equal(r.WebSocketImpl.sockets.length, 1);
  });

  test("bid() sends the bid and resolves with the matching bid.result", async () => {
    const r = room();
    const ws = r.connect();
    const promise = r.socket.bid({ amount: 20, maxAmount: 100, clientBidId: "c-1" });
    assert.deepEqual(ws.sentOf("bid"), [{ type: "bid", amount: 20, max_amount: 100, client_bid_id: "c-1" }]);

    const bid = { bid_id: 11, client_bid_id: "c-1", auction_id: 7, bidder: "A", amount: 20, max_amount: 100, position: 1, seq: null };
    ws.push({ type: "bid.queued", bid: { ...bid, status: "queued", reason: null } });
    ws.push({ type: "bid.result", bid: { ...bid, client_bid_id: "someone-else", bid_id: 12, status: "rejected", reason: "below_minimum" } });
    ws.push({ type: "bid.result", bid: { ...bid, status: "accepted", reason: null, seq: 2 } });
    const result = await promise;
    assert.equal(result.bid_id, 11);
    assert.equal(result.status, "accepted");
    assert.deepEqual(r.log.frames.map((f) => f.type), ["bid.queued", "bid.result", "bid.result"]);
    assert.equal(r.socket.state.auction.my_max, 100);
  });

  test("a bid decided rejected still resolves, with its reason", async () => {
    const r = room();
    const ws = r.connect();
    const promise = r.socket.bid({ amount: 3, clientBidId: "low" });
    ws.push({ type: "bid.result", bid: { bid_id: 1, client_bid_id: "low", auction_id: 7, bidder: "A", amount: 3, status: "rejected", reason: "below_minimum" } });
    const result = await promise;
    assert.equal(result.reason, "below_minimum");
    assert.equal(r.socket.state.auction.my_max, null);
  });

  test("bid() rejects with the matching error frame", async () => {
    const r = room();
    const ws = r.connect();
    const mine = r.socket.bid({ amount: 20, clientBidId: "c-2" });
    const other = r.socket.bid({ amount: 25, clientBidId: "c-3" });
    ws.push({ type: "error", code: "auction_ended", message: "the auction has ended", client_bid_id: "c-2" });
    await assert.rejects(mine, (err) => {
      assert.ok(err instanceof BidError);
      assert.equal(err.code, "auction_ended");
      assert.equal(err.message, "the auction has ended");
      assert.equal(err.clientBidId, "c-2");
      return true;
    });
    ws.push({ type: "error", code: "not_authenticated", message: "log in to bid", client_bid_id: "c-3" });
    await assert.rejects(other, (err) => err.code === "not_authenticated");
    assert.deepEqual(r.log.frames.map((f) => f.code), ["auction_ended", "not_authenticated"]);
  });

  test("bid() makes up a client_bid_id when given none", () => {
    const r = room();
    const ws = r.connect();
    r.socket.bid({ amount: 20 });
    r.socket.bid({ amount: 25 });
    const [a, b] = ws.sentOf("bid").map((f) => f.client_bid_id);
    assert.equal(typeof a, "string");
    assert.ok(a.length > 0 && a.length <= 64);
    assert.notEqual(a, b);
    assert.equal(ws.sentOf("bid")[0].max_amount, undefined);
  });

  test("bid() refuses a client_bid_id the server would refuse", async () => {
    const r = room();
    await assert.rejects(r.socket.bid({ amount: 20, clientBidId: "x".repeat(65) }), (err) => err.code === "invalid_field");
  });

  test("a bid made while disconnected goes out on connect; an undecided one is sent again after a reconnect", async () => {
    const r = room();
    const promise = r.socket.bid({ amount: 20, clientBidId: "c-4" });
    const first = r.ws;
    first.open();
    assert.deepEqual(first.sentOf("bid").map((f) => f.client_bid_id), ["c-4"]);
    first.push(snapshot());
    const bid = { bid_id: 11, client_bid_id: "c-4", auction_id: 7, bidder: "A", amount: 20, max_amount: null };
    first.push({ type: "bid.queued", bid: { ...bid, status: "queued" } });
    first.serverClose();

    r.timers.advance(375);
    const second = r.connect();
    assert.deepEqual(second.sentOf("bid").map((f) => f.client_bid_id), ["c-4"], "same client_bid_id: a repeat, not a new bid");
    // The server answers a repeat of a decided bid with queued then result; the published result may also come.
    second.push({ type: "bid.queued", bid: { ...bid, status: "accepted" } });
    second.push({ type: "bid.result", bid: { ...bid, status: "accepted" } });
    second.push({ type: "bid.result", bid: { ...bid, status: "accepted" } });
    assert.equal((await promise).status, "accepted");
    assert.deepEqual(r.log.frames.map((f) => f.type), ["bid.queued", "bid.result"], "repeats are not reported twice");
  });

  test("outbid and result frames go to onFrame", () => {
    const r = room();
    const ws = r.connect();
    const outbid = { type: "outbid", auction_id: 7, current_price: 55 };
    const result = { type: "result", auction_id: 7, outcome: "lost", final_price: 55 };
    ws.push(outbid);
    ws.push(result);
    ws.push("not json");
    assert.deepEqual(r.log.frames, [outbid, result]);
  });

  test("pings on connect and every 15 s; pongs set offsetMs from the quickest round trip", () => {
    const r = room();
    const ws = r.connect();
    assert.equal(ws.sentOf("ping").length, 1);
    assert.equal(r.socket.offsetMs, 0);

    r.timers.advance(100); // round trip 100 ms; the server read its clock at T0 + 50 and was 2 s ahead
    ws.push({ type: "pong", server_time: iso(T0 + 50 + 2000) });
    assert.equal(r.socket.offsetMs, 2000);
    assert.equal(r.socket.rttMs, 100);

    r.timers.advance(14_900);
    assert.equal(ws.sentOf("ping").length, 2);
    r.timers.advance(600); // a slow round trip: a worse estimate, not used
    ws.push({ type: "pong", server_time: iso(r.timers.now() - 300 + 9999) });
    assert.equal(r.socket.offsetMs, 2000);

    r.timers.advance(14_400);
    assert.equal(ws.sentOf("ping").length, 3);
    r.timers.advance(20);
    ws.push({ type: "pong", server_time: iso(r.timers.now() - 10 + 2500) });
    assert.equal(r.socket.offsetMs, 2500);
    assert.equal(r.socket.rttMs, 20);
    assert.equal(r.socket.serverNow(), r.timers.now() + 2500);
    assert.ok(!r.log.frames.some((f) => f.type === "pong"));
  });

  test("a ping left unanswered for a whole interval drops the connection", () => {
    const r = room();
    const first = r.connect();
    r.timers.advance(15_000);
    assert.equal(r.socket.status, "reconnecting");
    assert.equal(first.closedWith?.code, 4000);
    r.timers.advance(375);
    assert.equal(r.WebSocketImpl.sockets.length, 2);
  });

  test("a callback that throws does not break the socket", () => {
    const errors = [];
    const original = console.error;
    console.error = (err) => errors.push(err);
    try {
      const r = room({ onState: () => { throw new Error("page bug"); } });
      const ws = r.connect();
      ws.push(eventFrame(A_BIDS_20));
      assert.equal(r.socket.state.seq, 2);
    } finally {
      console.error = original;
    }
    assert.equal(errors.length, 2);
  });
});

// ---------------------------------------------------------------------------------------------------------
// LobbySocket
// ---------------------------------------------------------------------------------------------------------

describe("LobbySocket", () => {
  function lobby() {
    const timers = new FakeTimers(T0);
    const WebSocketImpl = fakeWebSocketClass();
    const log = { states: [], statuses: [], frames: [] };
    const socket = new LobbySocket({
      url: "ws://gavel.test", WebSocketImpl,
      now: timers.now, setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout, random: () => 0.5,
      onState: (auctions, changed) => log.states.push({ ids: [...auctions.keys()], changed }),
      onStatus: (status) => log.statuses.push(status),
      onFrame: (frame) => log.frames.push(frame),
    });
    return { socket, timers, log, WebSocketImpl, get ws() { return WebSocketImpl.sockets.at(-1); } };
  }
  const item = (id, overrides = {}) => auction({ id, seq: 1, ...overrides });

  test("keeps live and upcoming auctions by id and reports finished ones as they leave", () => {
    const l = lobby();
    assert.equal(l.ws.url, "ws://gavel.test/ws/lobby/");
    l.ws.open();
    l.ws.push({ type: "snapshot", auctions: [item(1), item(2, { status: "scheduled", seq: 0 })] });
    assert.equal(l.socket.status, "live");
    assert.deepEqual([...l.socket.auctions.keys()], [1, 2]);

    l.ws.push({ type: "auction", auction: item(1, { seq: 2, current_price: 30 }) });
    assert.equal(l.socket.auctions.get(1).current_price, 30);
    l.ws.push({ type: "auction", auction: item(1, { seq: 1, current_price: 10 }) }); // older: ignored
    const ended = item(1, { seq: 3, status: "ended", winner: "A", final_price: 30 });
    l.ws.push({ type: "auction", auction: ended });
    assert.deepEqual([...l.socket.auctions.keys()], [2]);
    l.ws.push({ type: "outbid", auction_id: 2, current_price: 15 });

    assert.deepEqual(l.log.states.map((s) => [s.ids, s.changed?.seq ?? null]), [
      [[1, 2], null], [[1, 2], 2], [[2], 3],
    ]);
    assert.deepEqual(l.log.states[2].changed, ended);
    assert.deepEqual(l.log.frames, [{ type: "outbid", auction_id: 2, current_price: 15 }]);
  });

  test("reconnects with backoff and starts over from the new snapshot", () => {
    const l = lobby();
    l.ws.open();
    l.ws.push({ type: "snapshot", auctions: [item(1), item(2)] });
    l.ws.serverClose(1006);
    assert.equal(l.socket.status, "reconnecting");
    l.timers.advance(375);
    assert.equal(l.WebSocketImpl.sockets.length, 2);
    l.ws.open();
    l.ws.push({ type: "snapshot", auctions: [item(2, { seq: 5 }), item(3)] });
    assert.deepEqual([...l.socket.auctions.keys()], [2, 3]);
    assert.deepEqual(l.log.statuses, ["connecting", "live", "reconnecting", "live"]);
    l.socket.close();
    assert.equal(l.socket.status, "closed");
  });
});

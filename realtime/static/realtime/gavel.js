// Gavel's browser client: follow an auction room or the lobby over WebSocket (CONTRACT.md, "WebSocket").
//
// The pure functions at the top are the client's model of the stream, the JavaScript twin of
// tests/stream_model.py: a snapshot plus the events after it, folded in seq order, equals a fresh snapshot.
// The socket classes below only move frames in and out and decide when to resume or reconnect.
//
// Plain ES module, no dependencies, no build step: <script type="module"> in the pages, `node --test` here.

// ---------------------------------------------------------------------------------------------------------
// Types (JSDoc only)
// ---------------------------------------------------------------------------------------------------------

/**
 * The contract's `auction` object (only the fields the client folds are listed).
 * @typedef {Object} Auction
 * @property {number} id
 * @property {"scheduled"|"live"|"ended"|"cancelled"} status
 * @property {string|null} ends_at
 * @property {number|null} current_price
 * @property {string|null} leader
 * @property {number} min_next_bid
 * @property {number} bid_count
 * @property {boolean|null} reserve_met
 * @property {string|null} winner
 * @property {number|null} final_price
 * @property {number} seq
 * @property {number|null} [my_max]      the caller's highest max (caller-specific)
 * @property {boolean} [is_leader]      whether the caller leads (caller-specific)
 */

/** @typedef {{rank: number, username: string, amount: number}} LeaderboardEntry */

/**
 * @typedef {Object} AuctionEvent
 * @property {number} seq     1, 2, 3... per auction, no gaps
 * @property {string} type    auction.started | bid.accepted | auction.extended | auction.ended | auction.cancelled
 * @property {string} at      ISO 8601 commit time
 * @property {Object<string, any>} data
 */

/**
 * What a room shows: the snapshot frame's `auction`, `leaderboard` and `seq`, kept current by events.
 * Treat it as read-only: every change produces a new object.
 * @typedef {{auction: Auction, leaderboard: LeaderboardEntry[], seq: number}} StreamState
 */

/**
 * The contract's `bid` object.
 * @typedef {Object} Bid
 * @property {number} bid_id
 * @property {string|null} client_bid_id
 * @property {number} auction_id
 * @property {string} bidder
 * @property {number} amount
 * @property {number|null} max_amount
 * @property {"queued"|"accepted"|"rejected"} status
 * @property {string|null} reason
 * @property {number|null} seq
 */

/**
 * The lobby's model: live and upcoming auctions by id, plus the last seq of every auction seen to end
 * (so a late, older frame cannot bring a finished auction back).
 * @typedef {{auctions: Map<number, Auction>, finished: Map<number, number>}} LobbyState
 */

// ---------------------------------------------------------------------------------------------------------
// The stream model (pure)
// ---------------------------------------------------------------------------------------------------------

/** Thrown by applyEvent when events are missing between the state and the event. */
export class SeqGapError extends Error {
  /**
   * @param {number} expected the seq that should have come next (state.seq + 1)
   * @param {number} received the seq that came
   */
  constructor(expected, received) {
    super(`seq gap: expected ${expected}, got ${received}`);
    this.name = "SeqGapError";
    this.expected = expected;
    this.received = received;
  }
}

/**
 * The state a room starts from.
 * @param {{auction: Auction, leaderboard: LeaderboardEntry[], seq: number}} frame a `snapshot` frame
 * @returns {StreamState}
 */
export function stateFromSnapshot(frame) {
  return {
    auction: { ...frame.auction },
    leaderboard: frame.leaderboard.map((entry) => ({ ...entry })),
    seq: frame.seq,
  };
}

/**
 * Where an event stands relative to a state: already reflected, the next one, or past a gap.
 * @param {StreamState} state
 * @param {AuctionEvent} event
 * @returns {"stale"|"next"|"gap"}
 */
export function classifyEvent(state, event) {
  if (!event || !Number.isInteger(event.seq)) throw new TypeError("an event needs an integer seq");
  if (event.seq <= state.seq) return "stale";
  return event.seq === state.seq + 1 ? "next" : "gap";
}

/**
 * Fold one event into a state, as tests/stream_model.py does.
 *
 * - An event with seq <= state.seq is already reflected: the same state object is returned (check with ===).
 * - An event with seq > state.seq + 1 throws SeqGapError: the caller must fetch the missing events first
 *   (resume) or start again from a snapshot. Throwing, rather than returning a marker, keeps the return
 *   type a state and makes it impossible to fold past a gap by accident.
 * - An unknown event type only advances seq (forward compatible).
 *
 * `is_leader` is caller-specific and not on the stream: with `options.viewer` (the caller's username) it is
 * recomputed from each event's leader; without it, it can only turn false when the leader changes.
 * The input state is never modified.
 *
 * @param {StreamState} state
 * @param {AuctionEvent} event
 * @param {{viewer?: string|null}} [options]
 * @returns {StreamState}
 * @throws {SeqGapError}
 */
export function applyEvent(state, event, options = {}) {
  const where = classifyEvent(state, event);
  if (where === "stale") return state;
  if (where === "gap") throw new SeqGapError(state.seq + 1, event.seq);

  const data = event.data ?? {};
  const auction = { ...state.auction, seq: event.seq };
  let leaderboard = state.leaderboard;
  switch (event.type) {
    case "auction.started":
      auction.status = "live";
      auction.ends_at = data.ends_at;
      break;
    case "bid.accepted":
      Object.assign(auction, leaderFlag(state.auction, data.leader, options.viewer));
      for (const key of ["current_price", "leader", "min_next_bid", "bid_count", "ends_at", "reserve_met"]) {
        auction[key] = data[key];
      }
      leaderboard = foldLeaderboard(state.leaderboard, data.bidder, data.amount, data.leader);
      break;
    case "auction.extended":
      auction.ends_at = data.ends_at;
      break;
    case "auction.ended":
      auction.status = "ended";
      auction.winner = data.winner;
      auction.final_price = data.final_price;
      auction.reserve_met = data.reserve_met;
      break;
    case "auction.cancelled":
      auction.status = "cancelled";
      break;
    default:
      break;
  }
  return { ...state, auction, leaderboard, seq: event.seq };
}

/** @returns {{is_leader?: boolean}} */
function leaderFlag(before, newLeader, viewer) {
  if (viewer) return { is_leader: newLeader === viewer };
  if (before.is_leader && newLeader !== before.leader) return { is_leader: false };
  return {};
}

/**
 * One entry per bidder with the highest amount shown for them; highest first, the leader first on ties.
 * Other ties keep their previous order (the server breaks them by bid position, which the stream does not
 * carry; earlier entries come from earlier bids, so keeping the order matches it in practice).
 * @param {LeaderboardEntry[]} board
 * @param {string} bidder
 * @param {number} amount
 * @param {string|null} leader
 * @returns {LeaderboardEntry[]}
 */
function foldLeaderboard(board, bidder, amount, leader) {
  const amounts = new Map(board.map((entry) => [entry.username, entry.amount]));
  amounts.set(bidder, Math.max(amounts.get(bidder) ?? 0, amount)); // an existing key keeps its place
  const ranked = [...amounts].sort(
    ([userA, amountA], [userB, amountB]) =>
      amountB - amountA || Number(userA !== leader) - Number(userB !== leader),
  ); // Array.prototype.sort is stable
  return ranked.map(([username, value], i) => ({ rank: i + 1, username, amount: value }));
}

/**
 * Fold the caller's own decided bid (a `bid.result` frame's bid) into `my_max`, which the public stream
 * never shows. Returns the same state when nothing changes.
 * @param {StreamState} state
 * @param {Bid} bid
 * @returns {StreamState}
 */
export function applyOwnBid(state, bid) {
  if (!bid || bid.status !== "accepted" || bid.auction_id !== state.auction.id) return state;
  const max = bid.max_amount ?? bid.amount;
  const current = state.auction.my_max;
  if (current != null && current >= max) return state;
  return { ...state, auction: { ...state.auction, my_max: max } };
}

// ---------------------------------------------------------------------------------------------------------
// Server clock (pure)
// ---------------------------------------------------------------------------------------------------------

/**
 * Estimate server clock minus client clock from one ping/pong: the server read its clock, on average,
 * halfway through the round trip.
 * @param {string} serverTimeIso `pong.server_time`
 * @param {number} sentAtMs client clock (ms since epoch) when the ping was sent
 * @param {number} receivedAtMs client clock when the pong arrived
 * @returns {number} offset in ms (positive: the server is ahead)
 */
export function clockOffset(serverTimeIso, sentAtMs, receivedAtMs) {
  const server = Date.parse(serverTimeIso);
  if (Number.isNaN(server)) throw new TypeError(`not an ISO time: ${serverTimeIso}`);
  return Math.round(server - (sentAtMs + receivedAtMs) / 2);
}

/**
 * The server's clock now, estimated.
 * @param {number} [offset] from clockOffset (0 if unknown)
 * @param {number} [now] client clock, for tests
 * @returns {number} ms since epoch
 */
export function serverNow(offset = 0, now = Date.now()) {
  return now + offset;
}

/**
 * Time left until `ends_at` by the server's clock, never negative; null when there is no end time.
 * @param {string|null} endsAtIso
 * @param {number} [offset]
 * @param {number} [now] client clock, for tests
 * @returns {number|null} ms
 */
export function remainingMs(endsAtIso, offset = 0, now = Date.now()) {
  if (endsAtIso == null) return null;
  const end = Date.parse(endsAtIso);
  if (Number.isNaN(end)) throw new TypeError(`not an ISO time: ${endsAtIso}`);
  return Math.max(0, end - serverNow(offset, now));
}

// ---------------------------------------------------------------------------------------------------------
// The lobby model (pure)
// ---------------------------------------------------------------------------------------------------------

const FINAL = new Set(["ended", "cancelled"]);

/**
 * @param {{auctions: Auction[]}} frame the lobby's `snapshot` frame
 * @param {Map<number, number>} [finished] carried over from before a reconnect
 * @returns {LobbyState}
 */
export function lobbyFromSnapshot(frame, finished = new Map()) {
  const auctions = new Map();
  for (const auction of frame.auctions) {
    if (!FINAL.has(auction.status)) auctions.set(auction.id, auction);
  }
  return { auctions, finished: new Map(finished) };
}

/**
 * Fold one lobby `auction` frame. Frames about one auction may be published by different server processes,
 * so they can arrive out of order: one older (by `seq`) than what is known is ignored, and so is anything
 * about an auction already seen to end. Ended and cancelled auctions leave the live-and-upcoming map.
 * Returns the same object when the frame changes nothing.
 * @param {LobbyState} lobby
 * @param {Auction} auction
 * @returns {LobbyState}
 */
export function applyLobbyAuction(lobby, auction) {
  const known = lobby.auctions.get(auction.id);
  if (known && auction.seq < known.seq) return lobby;
  const finishedAt = lobby.finished.get(auction.id);
  if (finishedAt !== undefined && auction.seq <= finishedAt) return lobby;
  const auctions = new Map(lobby.auctions);
  if (FINAL.has(auction.status)) {
    auctions.delete(auction.id);
    return { auctions, finished: new Map(lobby.finished).set(auction.id, auction.seq) };
  }
  auctions.set(auction.id, auction);
  return { auctions, finished: lobby.finished };
}

// ---------------------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------------------

const OPEN = 1; // WebSocket.OPEN
const CLOSE_NOT_FOUND = 4404;
const CLIENT_BID_ID_MAX = 64;
const OFFSET_SAMPLES = 8;
const SETTLED_MEMORY = 200;

/**
 * "connecting": first connection; "live": in sync; "reconnecting": lost, retrying with backoff;
 * "catching_up": a gap was seen, missing events requested (room only); "closed": close() or 4404, final.
 * @typedef {"connecting"|"live"|"reconnecting"|"catching_up"|"closed"} SocketStatus
 */

/**
 * Options shared by AuctionSocket and LobbySocket. Everything after `onFrame` exists for tests.
 * @typedef {Object} SocketOptions
 * @property {string} [url] e.g. "wss://gavel.example"; default: this page's origin with ws: or wss:
 * @property {string|null|(() => string|null)} [token] access token; a function is asked again at each
 *   reconnect (tokens expire). Without one the browser sends the session cookie.
 * @property {(status: SocketStatus, info: {code?: number}) => void} [onStatus]
 * @property {(frame: Object) => void} [onFrame] frames other than snapshot, event and pong
 * @property {typeof WebSocket} [WebSocketImpl]
 * @property {() => number} [now] client clock in ms (default Date.now)
 * @property {(fn: () => void, ms: number) => any} [setTimeout]
 * @property {(handle: any) => void} [clearTimeout]
 * @property {() => number} [random] in [0, 1), for the jitter (default Math.random)
 * @property {{initialMs?: number, maxMs?: number}} [backoff] default 500 and 10000
 * @property {number} [pingIntervalMs] default 15000; a ping unanswered by the next one drops the connection
 */

/** Connection, status, backoff, ping and clock offset, shared by the room and the lobby. */
class ReconnectingSocket {
  /**
   * @param {SocketOptions} options
   * @param {string} path
   */
  constructor(options, path) {
    this._base = (options.url ?? defaultBaseUrl()).replace(/\/+$/, "");
    this._path = path;
    this._token = options.token ?? null;
    this._onStatus = options.onStatus;
    this._onFrame = options.onFrame;
    this._WebSocket = options.WebSocketImpl ?? globalThis.WebSocket;
    this._now = options.now ?? (() => Date.now());
    this._setTimeout = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((handle) => globalThis.clearTimeout(handle));
    this._random = options.random ?? Math.random;
    this._backoff = { initialMs: 500, maxMs: 10_000, ...options.backoff };
    this._pingIntervalMs = options.pingIntervalMs ?? 15_000;

    /** @type {SocketStatus|null} */
    this.status = null;
    /** Server clock minus client clock, ms (0 until the first pong). */
    this.offsetMs = 0;
    /** Round trip of the sample offsetMs comes from, ms (null until the first pong). */
    this.rttMs = null;

    this._ws = null;
    this._closed = false;
    this._attempt = 0;
    this._liveSince = null;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._pingsInFlight = []; // send times; the server answers pings in order
    this._samples = [];
    this._onOnline = () => this._reconnectNow();
    globalThis.addEventListener?.("online", this._onOnline);
  }

  /** The socket's URL, with a fresh token. */
  get url() {
    const token = typeof this._token === "function" ? this._token() : this._token;
    return `${this._base}${this._path}` + (token ? `?token=${encodeURIComponent(token)}` : "");
  }

  /** Server clock now, estimated (ms since epoch). */
  serverNow() {
    return serverNow(this.offsetMs, this._now());
  }

  /** Stop for good: no reconnect, status "closed". */
  close() {
    if (this._closed) return;
    this._closed = true;
    globalThis.removeEventListener?.("online", this._onOnline);
    this._cancelReconnect();
    const ws = this._ws;
    this._detach();
    try {
      ws?.close(1000, "closed by the page");
    } catch {
      // already closing
    }
    this._closedFor({});
  }

  // --- connection lifecycle ---

  _connect() {
    this._reconnectTimer = null;
    if (this._closed) return;
    if (this.status === null) this._setStatus("connecting");
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._pingsInFlight = [];
    this._connectionStarted();
    // Handlers check `ws === this._ws`: a socket we have let go of can say nothing more.
    ws.onopen = () => ws === this._ws && this._opened();
    ws.onmessage = (message) => ws === this._ws && this._received(message.data);
    ws.onclose = (event) => ws === this._ws && this._lost(event.code);
    ws.onerror = () => {}; // per the WebSocket spec a close event always follows an error; handled there
  }

  _opened() {
    this._ping();
    this._schedulePing();
    this._connectionOpened();
  }

  /** @param {number} code */
  _lost(code) {
    this._detach();
    if (this._closed) return;
    if (code === CLOSE_NOT_FOUND) {
      this._closed = true;
      globalThis.removeEventListener?.("online", this._onOnline);
      this._closedFor({ code });
      return;
    }
    this._setStatus("reconnecting", { code });
    this._scheduleReconnect();
  }

  /** Give up on the current connection (it is stuck) and reconnect. */
  _drop(reason) {
    const ws = this._ws;
    this._lost(1006);
    try {
      ws?.close(4000, reason);
    } catch {
      // nothing to do
    }
  }

  _detach() {
    this._ws = null;
    if (this._pingTimer !== null) this._clearTimeout(this._pingTimer);
    this._pingTimer = null;
    this._pingsInFlight = [];
    this._connectionEnded();
  }

  _scheduleReconnect() {
    // A connection that stayed live for a while resets the backoff; one that flaps keeps growing it.
    if (this._liveSince !== null && this._now() - this._liveSince >= this._backoff.maxMs) this._attempt = 0;
    this._liveSince = null;
    const delay = backoffDelay(this._attempt, this._backoff, this._random());
    this._attempt += 1;
    this._reconnectTimer = this._setTimeout(() => this._connect(), delay);
  }

  _cancelReconnect() {
    if (this._reconnectTimer !== null) this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
  }

  /** The browser says the network is back: skip the rest of the backoff. */
  _reconnectNow() {
    if (this._reconnectTimer === null || this._closed) return;
    this._cancelReconnect();
    this._connect();
  }

  _markLive() {
    this._liveSince = this._now();
    this._setStatus("live");
  }

  // --- frames ---

  _send(frame) {
    if (!this._ws || this._ws.readyState !== OPEN) return false;
    this._ws.send(JSON.stringify(frame));
    return true;
  }

  _received(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    if (!frame || typeof frame.type !== "string") return;
    if (frame.type === "pong") this._pong(frame);
    else this._handle(frame);
  }

  // --- ping and clock ---

  _schedulePing() {
    this._pingTimer = this._setTimeout(() => {
      this._pingTimer = null;
      if (this._pingsInFlight.length > 0) {
        this._drop("no pong"); // the last ping went unanswered for a whole interval: the link is dead
        return;
      }
      this._ping();
      this._schedulePing();
    }, this._pingIntervalMs);
  }

  _ping() {
    if (this._send({ type: "ping" })) this._pingsInFlight.push(this._now());
  }

  _pong(frame) {
    const sentAt = this._pingsInFlight.shift();
    if (sentAt === undefined || typeof frame.server_time !== "string") return;
    const receivedAt = this._now();
    let offset;
    try {
      offset = clockOffset(frame.server_time, sentAt, receivedAt);
    } catch {
      return;
    }
    this._samples.push({ offset, rtt: receivedAt - sentAt });
    if (this._samples.length > OFFSET_SAMPLES) this._samples.shift();
    // The shortest round trip bounds the error best (NTP's reasoning).
    const best = this._samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    this.offsetMs = best.offset;
    this.rttMs = best.rtt;
  }

  // --- callbacks ---

  _setStatus(status, info = {}) {
    if (status === this.status) return;
    this.status = status;
    this._call(this._onStatus, status, info);
  }

  _frame(frame) {
    this._call(this._onFrame, frame);
  }

  /** A page's callback that throws must not break the socket's bookkeeping. */
  _call(callback, ...args) {
    if (!callback) return;
    try {
      callback(...args);
    } catch (err) {
      (globalThis.reportError ?? console.error)(err);
    }
  }

  // --- hooks for subclasses ---
  _connectionStarted() {}
  _connectionOpened() {}
  _connectionEnded() {}
  _closedFor(info) {
    this._setStatus("closed", info);
  }
  /** @param {Object} frame */
  _handle(frame) {
    this._frame(frame);
  }
}

/**
 * Reconnect delay: 0.5 s doubling to 10 s (by default), with "equal jitter": a random point in the upper
 * half of the step, so a server restart is not met by every client at the same instant.
 * @param {number} attempt 0 for the first retry
 * @param {{initialMs: number, maxMs: number}} backoff
 * @param {number} random in [0, 1)
 * @returns {number} ms
 */
export function backoffDelay(attempt, backoff, random) {
  const step = Math.min(backoff.maxMs, backoff.initialMs * 2 ** attempt);
  return Math.round(step / 2 + (step / 2) * random);
}

function defaultBaseUrl() {
  const location = globalThis.location;
  if (!location) throw new TypeError("`url` is required outside a browser page");
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;
}

/** A refused or failed bid: an `error` frame for it, or the socket closing for good before its result. */
export class BidError extends Error {
  /**
   * @param {string} code the error frame's code ("auction_ended", "auction_not_live", "invalid_amount",
   *   "rate_limited", "not_authenticated", ...), or "closed" / "not_found" when the socket ended first.
   *   (A bid decided `rejected`, e.g. below_minimum, is not an error: bid() resolves with it.)
   * @param {string} message
   * @param {Object|null} [frame] the error frame, when there was one
   */
  constructor(code, message, frame = null) {
    super(message);
    this.name = "BidError";
    this.code = code;
    this.frame = frame;
    this.clientBidId = frame?.client_bid_id ?? null;
  }
}

function newClientBidId() {
  const crypto = globalThis.crypto;
  if (crypto?.randomUUID) return crypto.randomUUID(); // secure contexts only (https, localhost)
  if (crypto?.getRandomValues) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

/**
 * @typedef {SocketOptions & {
 *   auctionId: number,
 *   username?: string|null,
 *   onState?: (state: StreamState, event: AuctionEvent|null) => void,
 *   catchUpTimeoutMs?: number,
 * }} AuctionSocketOptions
 * `username`: the caller, to keep `is_leader` right (also learned from the caller's own bid frames).
 * `catchUpTimeoutMs` (default 10000): a resume that has not closed the gap by then reconnects instead.
 */

/**
 * One auction room: `/ws/auctions/{id}/`. Connects at once.
 *
 * `state` is the snapshot with every event folded in, exactly once and in seq order. On a gap it asks the
 * server to resume after its seq; on a lost connection it reconnects and takes the new snapshot as the
 * whole truth (events come live after it), so nothing is lost or counted twice across reconnects.
 * Bids not yet decided when a connection drops are sent again, with the same client_bid_id, on the next
 * one: the server treats that as a repeat, creating nothing and answering with the bid as it stands.
 */
export class AuctionSocket extends ReconnectingSocket {
  /** @param {AuctionSocketOptions} options */
  constructor(options) {
    super(options, `/ws/auctions/${encodeURIComponent(options.auctionId)}/`);
    this.auctionId = options.auctionId;
    /** @type {StreamState|null} */
    this.state = null;
    this._onState = options.onState;
    this._username = options.username ?? null;
    this._catchUpTimeoutMs = options.catchUpTimeoutMs ?? 10_000;
    this._synced = false; // this connection's snapshot has arrived
    this._highestSeen = 0; // while catching up: the highest seq seen, to know when the gap is closed
    this._catchUpTimer = null;
    /** @type {Map<string, {frame: Object, resolve: (bid: Bid) => void, reject: (err: BidError) => void, promise: Promise<Bid>, queuedSeen: boolean}>} */
    this._pending = new Map();
    this._settled = new Set(); // recently settled client_bid_ids, to drop the repeats a resend can cause
    this._connect();
  }

  /**
   * Bid over the socket. Resolves with the decided bid (`bid.result`: status "accepted" or "rejected" with a
   * `reason`); rejects with a BidError for what the server refuses at once (an `error` frame carrying this
   * client_bid_id) or when the socket closes for good first. Sent now if connected, else on connection.
   * `bid.queued` and `bid.result` frames are also given to onFrame.
   * @param {{amount: number, maxAmount?: number|null, clientBidId?: string}} bid
   * @returns {Promise<Bid>}
   */
  bid({ amount, maxAmount = null, clientBidId }) {
    if (this._closed) return Promise.reject(new BidError("closed", "the socket is closed"));
    const id = clientBidId ?? newClientBidId();
    if (typeof id !== "string" || id.length === 0 || id.length > CLIENT_BID_ID_MAX) {
      return Promise.reject(new BidError("invalid_field", `client_bid_id must be 1..${CLIENT_BID_ID_MAX} characters`));
    }
    const existing = this._pending.get(id);
    if (existing) return existing.promise;
    this._settled.delete(id);
    const frame = { type: "bid", amount, client_bid_id: id };
    if (maxAmount != null) frame.max_amount = maxAmount;
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this._pending.set(id, { frame, resolve, reject, promise, queuedSeen: false });
    this._send(frame);
    return promise;
  }

  _connectionStarted() {
    this._synced = false;
  }

  _connectionOpened() {
    for (const entry of this._pending.values()) this._send(entry.frame);
  }

  _connectionEnded() {
    this._synced = false;
    this._stopCatchUp();
  }

  _closedFor(info) {
    const error = info.code === CLOSE_NOT_FOUND
      ? new BidError("not_found", "no such auction")
      : new BidError("closed", "the socket was closed before the bid was decided");
    for (const entry of this._pending.values()) entry.reject(error);
    this._pending.clear();
    super._closedFor(info);
  }

  _handle(frame) {
    switch (frame.type) {
      case "snapshot":
        return this._snapshot(frame);
      case "event":
        return this._event(frame.event);
      case "bid.queued":
        return this._bidQueued(frame);
      case "bid.result":
        return this._bidResult(frame);
      case "error":
        return this._error(frame);
      default:
        return this._frame(frame); // outbid, result, and whatever a newer server adds
    }
  }

  _snapshot(frame) {
    // On connect, and in answer to a resume when too much is missing: either way the whole truth.
    this._stopCatchUp();
    this.state = stateFromSnapshot(frame);
    if (this.state.auction.is_leader && this.state.auction.leader) this._username = this.state.auction.leader;
    this._synced = true;
    this._markLive();
    this._call(this._onState, this.state, null);
  }

  /** @param {AuctionEvent} event */
  _event(event) {
    if (!this._synced || !this.state || !event || !Number.isInteger(event.seq)) return;
    const where = classifyEvent(this.state, event);
    if (where === "stale") return;
    if (where === "gap") {
      // Ignore it: the resumed events include it (events are persisted before they are sent).
      this._highestSeen = Math.max(this._highestSeen, event.seq);
      if (this.status !== "catching_up") this._startCatchUp();
      return;
    }
    this.state = applyEvent(this.state, event, { viewer: this._username });
    this._call(this._onState, this.state, event);
    if (this.status === "catching_up" && this.state.seq >= this._highestSeen) {
      this._stopCatchUp();
      this._setStatus("live");
    }
  }

  _startCatchUp() {
    this._send({ type: "resume", after_seq: this.state.seq });
    this._setStatus("catching_up");
    this._catchUpTimer = this._setTimeout(() => {
      this._catchUpTimer = null;
      this._drop("resume did not close the gap"); // a reconnect brings a fresh snapshot
    }, this._catchUpTimeoutMs);
  }

  _stopCatchUp() {
    this._highestSeen = 0;
    if (this._catchUpTimer !== null) this._clearTimeout(this._catchUpTimer);
    this._catchUpTimer = null;
  }

  _learnUser(bid) {
    if (bid && typeof bid.bidder === "string") this._username = bid.bidder;
  }

  _bidQueued(frame) {
    const id = frame.bid?.client_bid_id;
    this._learnUser(frame.bid);
    const entry = id != null ? this._pending.get(id) : undefined;
    if (entry) {
      if (entry.queuedSeen) return; // the answer to a resend: the page has heard it already
      entry.queuedSeen = true;
    } else if (id != null && this._settled.has(id)) {
      return;
    }
    this._frame(frame);
  }

  _bidResult(frame) {
    const bid = frame.bid;
    const id = bid?.client_bid_id;
    this._learnUser(bid);
    const entry = id != null ? this._pending.get(id) : undefined;
    if (!entry && id != null && this._settled.has(id)) return; // a resend's repeat of a result we gave
    if (this.state && bid) {
      const next = applyOwnBid(this.state, bid);
      if (next !== this.state) {
        this.state = next;
        this._call(this._onState, this.state, null);
      }
    }
    this._frame(frame);
    if (entry) {
      this._settle(id);
      entry.resolve(bid);
    }
  }

  _error(frame) {
    const id = frame.client_bid_id;
    const entry = id != null ? this._pending.get(id) : undefined;
    this._frame(frame);
    if (entry) {
      this._settle(id);
      entry.reject(new BidError(frame.code, frame.message, frame));
    }
  }

  _settle(id) {
    this._pending.delete(id);
    this._settled.add(id);
    if (this._settled.size > SETTLED_MEMORY) this._settled.delete(this._settled.values().next().value);
  }
}

/**
 * @typedef {SocketOptions & {
 *   onState?: (auctions: Map<number, Auction>, changed: Auction|null) => void,
 * }} LobbySocketOptions
 * `onState(auctions, changed)`: after the snapshot (changed null) and after every `auction` frame that
 * changes something; an auction that ended or was cancelled is already gone from `auctions` but is `changed`.
 */

/** The lobby: `/ws/lobby/`, live and scheduled auctions by id. Connects at once. */
export class LobbySocket extends ReconnectingSocket {
  /** @param {LobbySocketOptions} options */
  constructor(options) {
    super(options, "/ws/lobby/");
    this._onState = options.onState;
    /** @type {LobbyState|null} */
    this.lobby = null;
    this._synced = false;
    this._connect();
  }

  /** Live and upcoming auctions by id (empty until the first snapshot). */
  get auctions() {
    return this.lobby?.auctions ?? new Map();
  }

  _connectionStarted() {
    this._synced = false;
  }

  _handle(frame) {
    if (frame.type === "snapshot") {
      this.lobby = lobbyFromSnapshot(frame, this.lobby?.finished);
      this._synced = true;
      this._markLive();
      this._call(this._onState, this.lobby.auctions, null);
    } else if (frame.type === "auction") {
      if (!this._synced || !frame.auction) return;
      const next = applyLobbyAuction(this.lobby, frame.auction);
      if (next === this.lobby) return;
      this.lobby = next;
      this._call(this._onState, next.auctions, frame.auction);
    } else {
      this._frame(frame); // outbid, result, error
    }
  }
}

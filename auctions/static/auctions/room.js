// An auction room. The server rendered it at some seq; from here the AuctionSocket keeps the state
// (snapshot + events, gap-free across reconnects) and this script only draws it: price, leader, your
// status, the bid box, the countdown on the server's clock, history, leaderboard, toasts and the result.

import { AuctionSocket, remainingMs } from "/static/realtime/gavel.js";
import {
  flash, formatClock, formatCoins, formatDuration, link, pageData, pageOffset, showConnection, toast,
} from "/static/core/ui.js";

const SOON_MS = 60_000; // "ending soon": the nudge shows and the clock turns red
const HISTORY_SHOWN = 50;
const HISTORY_KEPT = 200;
const MAX_COINS = 10 ** 12;

const REASONS = {
  below_minimum: "Too low: someone got there first. Check the next minimum bid and try again.",
  insufficient_funds: "Not enough available coins for that bid (or its proxy max). See your wallet.",
  auction_ended: "Too late: the auction has ended.",
  auction_not_live: "The auction is not open for bids.",
  seller_cannot_bid: "Sellers cannot bid on their own lots.",
  invalid_amount: "Enter a whole number of coins; a proxy max must be at least the bid.",
  rate_limited: "Too many bids at once: wait a moment and try again.",
  not_authenticated: "Your session has ended: log in again to bid.",
  not_found: "This auction no longer exists.",
  closed: "The connection closed before the bid was decided: reload the page to see where it stands.",
};

const data = pageData();
const me = data.me.username;
const $ = (id) => document.getElementById(id);
const ui = {
  badge: $("conn"),
  status: $("status-badge"),
  priceLabel: $("price-label"),
  price: $("price"),
  priceAmount: $("price-amount"),
  leaderLabel: $("leader-label"),
  leader: $("leader"),
  bidCount: $("bid-count"),
  minNext: $("min-next"),
  reserveRow: $("reserve-row"),
  reserve: $("reserve"),
  clock: $("clock"),
  clockLabel: $("clock-label"),
  countdown: $("countdown"),
  endsLabel: $("ends-label"),
  endsAt: $("ends-at"),
  extended: $("extended"),
  myStatus: $("my-status"),
  nudge: $("nudge"),
  result: $("result"),
  form: $("bid-form"),
  fieldset: $("bid-fieldset"),
  amount: $("bid-amount"),
  max: $("bid-max"),
  minHint: $("min-hint"),
  opensHint: $("opens-hint"),
  submit: $("bid-submit"),
  buyNow: $("buy-now"),
  buyNowRow: $("buy-now-row"),
  feedback: $("bid-feedback"),
  board: $("leaderboard"),
  boardEmpty: $("leaderboard-empty"),
  history: $("history"),
  historyEmpty: $("history-empty"),
};

let state = { auction: data.snapshot.auction, leaderboard: data.snapshot.leaderboard, seq: data.snapshot.seq };
const auctionId = state.auction.id;
const fallbackOffset = pageOffset(data.snapshot.server_time);

// Bid history: accepted bids by seq. Every event up to `historyUpTo` has been seen; a snapshot after a
// reconnect jumps ahead of it, and the events in between are fetched from the persisted stream.
const history = new Map(data.history.map((event) => [event.seq, event]));
let historyUpTo = data.snapshot.seq;
let backfilling = false;

let amountEdited = false; // the bidder typed an amount: stop following the minimum
let pendingBids = 0;
let myResult = null; // this auction's `result` frame, if we got one
let outbidAt = 0; // when this auction's last `outbid` frame came
let extendedTimer = null;

const socket = new AuctionSocket({
  auctionId,
  username: me,
  onStatus: (status) => {
    showConnection(ui.badge, status);
    if (pendingBids && status === "reconnecting") {
      setFeedback("Connection lost: your bid is kept and will be confirmed when it is back.");
    }
  },
  onState: (next, event) => {
    const before = state;
    state = next;
    followHistory(event);
    noticeExtension(before.auction, next.auction);
    render();
  },
  onFrame,
});

const offset = () => (socket.rttMs == null ? fallbackOffset : socket.offsetMs);

// --- what is mine --------------------------------------------------------------------------

function myStatus() {
  const a = state.auction;
  if (!me) return "anonymous";
  if (a.seller === me) return "seller";
  if (a.leader === me) return "leading";
  if (state.leaderboard.some((entry) => entry.username === me)) return "outbid";
  return "not_bidding";
}

// --- drawing -------------------------------------------------------------------------------

function setText(element, text) {
  if (element && element.textContent !== text) element.textContent = text;
}

function render() {
  const a = state.auction;
  const final = a.status === "ended" || a.status === "cancelled";
  ui.status.className = `badge badge--${a.status}`;
  setText(ui.status, { live: "Live", scheduled: "Upcoming", ended: "Ended", cancelled: "Cancelled" }[a.status]);

  const sold = a.status === "ended" && a.final_price != null;
  setText(ui.priceLabel, sold ? "Sold for" : a.current_price != null ? "Current price" : "Starting price");
  const price = formatCoins(sold ? a.final_price : a.current_price ?? a.starting_price);
  if (ui.priceAmount.textContent !== price) {
    ui.priceAmount.textContent = price;
    flash(ui.price);
  }
  const you = (name) => `${name}${name === me ? " (you)" : ""}`;
  setText(ui.leaderLabel, a.status === "ended" ? "Winner" : "Leader");
  if (a.status === "ended") setText(ui.leader, a.winner ? you(a.winner) : "None");
  else setText(ui.leader, a.leader ? you(a.leader) : "No bids yet");
  setText(ui.bidCount, String(a.bid_count));
  setText(ui.minNext, final ? "—" : formatCoins(a.min_next_bid));
  ui.reserveRow.hidden = a.reserve_met == null;
  if (ui.buyNowRow) ui.buyNowRow.hidden = a.bid_count > 0 || final; // offered until the first accepted bid
  setText(ui.reserve, a.reserve_met ? "Met" : "Not met");

  renderMyStatus();
  renderResult();
  renderBidBox();
  renderBoard();
  renderHistory();
  tick();
}

function renderMyStatus() {
  const a = state.auction;
  const mine = myStatus();
  const final = a.status === "ended" || a.status === "cancelled";
  ui.myStatus.hidden = mine === "anonymous" || final;
  ui.myStatus.className = `mystatus mystatus--${mine}`;
  ui.myStatus.dataset.status = mine;
  const text = {
    leading: `You are leading${a.my_max != null ? ` · your max ${formatCoins(a.my_max)}` : ""}`,
    outbid: `You have been outbid · bid at least ${formatCoins(a.min_next_bid)} to lead`,
    not_bidding: "You are not bidding",
    seller: "You are selling this lot",
  }[mine];
  setText(ui.myStatus, text ?? "");
}

function renderResult() {
  const a = state.auction;
  if (a.status !== "ended" && a.status !== "cancelled") {
    ui.result.hidden = true;
    return;
  }
  let kind = "none";
  let title;
  let detail = "";
  if (a.status === "cancelled") {
    title = "This auction was cancelled";
    detail = "Every hold was released; no coins moved.";
  } else if (a.winner) {
    kind = a.winner === me ? "won" : "sold";
    title = a.winner === me
      ? `You won! You pay ${formatCoins(a.final_price)} coins`
      : `Sold to ${a.winner} for ${formatCoins(a.final_price)} coins`;
    if (a.winner === me) detail = "The coins have moved to the seller; the rest of your hold is free again.";
    else if (myResult?.outcome === "lost" || myStatus() === "outbid") detail = "You did not win this one; your hold is released.";
    else if (myResult?.outcome === "sold") detail = "Your lot is sold: the coins are in your wallet.";
  } else {
    title = "Ended without a winner";
    detail = a.reserve_met === false ? "The reserve price was not met." : "Nobody bid.";
  }
  ui.result.hidden = false;
  ui.result.className = `result result--${kind}`;
  ui.result.dataset.outcome = kind;
  const key = `${title}|${detail}`;
  if (ui.result.dataset.key === key) return;
  ui.result.dataset.key = key;
  const heading = document.createElement("h2");
  heading.textContent = title;
  const parts = [heading];
  if (detail) {
    const p = document.createElement("p");
    p.textContent = detail;
    parts.push(p);
  }
  if (kind === "won" || myResult?.outcome === "sold") {
    const p = document.createElement("p");
    p.append(link("/wallet/", "See your wallet"));
    parts.push(p);
  }
  ui.result.replaceChildren(...parts);
}

function renderBidBox() {
  if (!ui.form) return;
  const a = state.auction;
  ui.form.hidden = a.status === "ended" || a.status === "cancelled";
  ui.fieldset.disabled = a.status !== "live";
  ui.opensHint.hidden = a.status !== "scheduled";
  ui.amount.min = String(a.min_next_bid);
  if (!amountEdited || ui.amount.value === "") ui.amount.value = String(a.min_next_bid);
  setText(ui.minHint, formatCoins(a.min_next_bid));
  if (ui.buyNow) ui.buyNow.hidden = !(a.buy_now_price != null && a.bid_count === 0 && a.status === "live");
}

function renderBoard() {
  const items = state.leaderboard.map((entry) => {
    const li = document.createElement("li");
    if (entry.username === me) li.className = "board__me";
    const who = document.createElement("span");
    const rank = document.createElement("span");
    rank.className = "board__rank";
    rank.textContent = `${entry.rank}.`;
    who.append(rank, entry.username + (entry.username === me ? " (you)" : ""));
    const amount = document.createElement("span");
    amount.className = "board__amount";
    amount.textContent = formatCoins(entry.amount);
    li.append(who, amount);
    return li;
  });
  ui.board.replaceChildren(...items);
  ui.boardEmpty.hidden = items.length > 0;
}

function renderHistory() {
  const events = [...history.values()].sort((x, y) => y.seq - x.seq).slice(0, HISTORY_SHOWN);
  const key = events.map((e) => e.seq).join(",");
  if (ui.history.dataset.key === key) return; // (the first render replaces the server's, for local times)
  ui.history.dataset.key = key;
  ui.history.replaceChildren(...events.map(historyItem));
  ui.historyEmpty.hidden = events.length > 0;
}

function historyItem(event) {
  const { bidder, amount, proxy } = event.data;
  const li = document.createElement("li");
  li.dataset.seq = String(event.seq);
  const who = document.createElement("span");
  who.className = "history__who";
  const name = document.createElement("strong");
  name.textContent = bidder + (bidder === me ? " (you)" : "");
  who.append(name);
  if (proxy) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "auto";
    tag.title = "raised automatically by a proxy max";
    who.append(tag);
  }
  const meta = document.createElement("span");
  meta.className = "history__meta";
  const time = document.createElement("time");
  time.dateTime = event.at;
  time.textContent = formatClock(event.at);
  meta.append(time);
  who.append(" ", meta);
  const value = document.createElement("span");
  value.className = "history__amount";
  value.textContent = formatCoins(amount);
  li.append(who, value);
  return li;
}

// --- the clock -----------------------------------------------------------------------------

function tick() {
  const a = state.auction;
  let label = "Auction";
  let text = a.status === "cancelled" ? "Cancelled" : "Ended";
  let endsLabel = "Ended at";
  let when = a.ends_at;
  let left = null;
  if (a.status === "live") {
    left = remainingMs(a.ends_at, offset());
    label = "Time left";
    endsLabel = "Ends at";
    text = left > 0 ? formatDuration(left) : "Closing…";
  } else if (a.status === "scheduled") {
    const toStart = remainingMs(a.starts_at, offset());
    label = "Starts in";
    endsLabel = "Starts at";
    when = a.starts_at;
    text = toStart > 0 ? formatDuration(toStart) : "Starting…";
  } else if (a.status === "cancelled") {
    endsLabel = "Was to end at";
  }
  setText(ui.clockLabel, label);
  setText(ui.countdown, text);
  ui.countdown.dataset.remainingMs = left == null ? "" : String(left);
  setText(ui.endsLabel, endsLabel);
  if (ui.endsAt.dateTime !== when) ui.endsAt.dateTime = when;
  setText(ui.endsAt, formatClock(when));
  const soon = left != null && left < SOON_MS;
  ui.clock.classList.toggle("clock--soon", soon);
  renderNudge(soon && left > 0);
}

function renderNudge(endingSoon) {
  const show = endingSoon && myStatus() === "outbid";
  ui.nudge.hidden = !show;
  if (show) {
    setText(ui.nudge, `Ending soon and you are not winning: bid at least ${formatCoins(state.auction.min_next_bid)} coins to take the lead.`);
  }
}

/** Anti-sniping moved the end: say so, and make the clock visibly jump. */
function noticeExtension(before, after) {
  if (before.status !== "live" || after.status !== "live" || !before.ends_at || !after.ends_at) return;
  const delta = Date.parse(after.ends_at) - Date.parse(before.ends_at);
  if (!(delta > 0)) return;
  ui.extended.textContent = `Extended by ${formatDuration(delta)}: a late bid added time.`;
  flash(ui.clock, "clock--extended");
  clearTimeout(extendedTimer);
  extendedTimer = setTimeout(() => { ui.extended.textContent = ""; }, 10_000);
}

// --- history across reconnects ----------------------------------------------------------------

function followHistory(event) {
  if (event) {
    if (event.type === "bid.accepted") history.set(event.seq, event);
    if (event.seq === historyUpTo + 1) historyUpTo = event.seq;
  }
  if (state.seq > historyUpTo) backfill();
  if (history.size > HISTORY_KEPT) {
    const keep = [...history.keys()].sort((x, y) => y - x).slice(0, HISTORY_KEPT);
    for (const seq of history.keys()) if (!keep.includes(seq)) history.delete(seq);
  }
}

async function backfill() {
  if (backfilling) return;
  backfilling = true;
  try {
    while (historyUpTo < state.seq) {
      const response = await fetch(`/api/auctions/${auctionId}/events?after=${historyUpTo}&limit=1000`,
        { headers: { Accept: "application/json" } });
      if (!response.ok) break;
      const { events } = await response.json();
      if (!events.length) break;
      for (const event of events) if (event.type === "bid.accepted") history.set(event.seq, event);
      historyUpTo = Math.max(historyUpTo, events[events.length - 1].seq);
    }
  } catch {
    // The next snapshot (after a reconnect) tries again.
  } finally {
    backfilling = false;
    renderHistory();
  }
}

// --- frames for me -------------------------------------------------------------------------

function onFrame(frame) {
  const here = frame.auction_id === auctionId;
  if (frame.type === "outbid") {
    if (here) {
      const again = document.createElement("button");
      again.type = "button";
      again.className = "button button--small";
      again.textContent = "Bid again";
      again.addEventListener("click", () => {
        amountEdited = false;
        renderBidBox();
        ui.amount?.focus();
        again.closest(".toast")?.remove();
      });
      toast([`You have been outbid: the price is now ${formatCoins(frame.current_price)} coins. `, again],
        { kind: "outbid" });
      outbidAt = Date.now();
    } else {
      toast(["You were outbid on ", link(`/auctions/${frame.auction_id}/`, `lot #${frame.auction_id}`),
        `: now ${formatCoins(frame.current_price)} coins.`], { kind: "outbid" });
    }
  } else if (frame.type === "result") {
    if (here) {
      myResult = frame;
      render();
      const text = {
        won: `You won this lot for ${formatCoins(frame.final_price)} coins.`,
        lost: "The auction has ended and you did not win.",
        sold: `Your lot sold for ${formatCoins(frame.final_price)} coins.`,
        unsold: "The auction has ended without a sale.",
      }[frame.outcome];
      if (text) toast(text, { kind: frame.outcome === "won" ? "won" : "info", ms: 0 });
    } else if (frame.outcome === "won") {
      toast(["You won ", link(`/auctions/${frame.auction_id}/`, `lot #${frame.auction_id}`),
        ` for ${formatCoins(frame.final_price)} coins.`], { kind: "won", ms: 0 });
    }
  } else if (frame.type === "bid.queued" && frame.bid?.auction_id === auctionId) {
    setFeedback(`Bid of ${formatCoins(frame.bid.amount)} coins received; deciding…`);
  } else if (frame.type === "error" && !frame.client_bid_id) {
    setFeedback(REASONS[frame.code] ?? frame.message, "error");
  }
}

// --- bidding -------------------------------------------------------------------------------

function setFeedback(text, kind = "") {
  if (!ui.feedback) return;
  ui.feedback.className = `feedback${kind ? ` feedback--${kind}` : ""}`;
  ui.feedback.dataset.kind = kind;
  ui.feedback.textContent = text;
}

function parseCoins(text) {
  const clean = String(text).trim().replace(/[,\s]/g, "");
  if (!/^\d+$/.test(clean)) return null;
  const value = Number(clean);
  return value >= 1 && value <= MAX_COINS ? value : null;
}

function invalid(input, message) {
  input.setAttribute("aria-invalid", "true");
  input.focus();
  setFeedback(message, "error");
}

async function placeBid(amount, maxAmount) {
  pendingBids += 1;
  ui.submit.disabled = true;
  setFeedback(`Placing your bid of ${formatCoins(amount)} coins…`);
  try {
    const bid = await socket.bid({ amount, maxAmount });
    if (bid.status === "accepted") {
      amountEdited = false;
      ui.max.value = "";
      const accepted = `Your bid of ${formatCoins(bid.amount)} coins was accepted`;
      if (bid.seq == null) setFeedback(`${accepted}: your proxy max is raised; the price stays.`, "ok");
      else if (state.auction.leader === me) setFeedback(`${accepted}. You are leading.`, "ok");
      else if (Date.now() - outbidAt < 5000) setFeedback(`${accepted}, but a higher proxy max outbid it at once.`, "error");
      else setFeedback(`${accepted}.`, "ok");
      render();
    } else {
      setFeedback(REASONS[bid.reason] ?? `Your bid was rejected (${bid.reason}).`, "error");
    }
  } catch (err) {
    setFeedback(REASONS[err.code] ?? err.message ?? "The bid failed.", "error");
  } finally {
    pendingBids -= 1;
    ui.submit.disabled = false;
  }
}

if (ui.form) {
  ui.amount.addEventListener("input", () => {
    amountEdited = true;
    ui.amount.removeAttribute("aria-invalid");
  });
  ui.max.addEventListener("input", () => ui.max.removeAttribute("aria-invalid"));
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const amount = parseCoins(ui.amount.value);
    if (amount == null) return invalid(ui.amount, "Enter your bid as a whole number of coins.");
    const maxText = ui.max.value.trim();
    const maxAmount = maxText === "" ? null : parseCoins(maxText);
    if (maxText !== "" && maxAmount == null) return invalid(ui.max, "Enter the proxy max as a whole number of coins.");
    if (maxAmount != null && maxAmount < amount) return invalid(ui.max, "Your proxy max must be at least your bid.");
    placeBid(amount, maxAmount);
  });
  // Buying now spends real coins at once: the first press arms the button, the second buys.
  let disarm = null;
  const buyLabel = () => `Buy now for ${formatCoins(state.auction.buy_now_price)} coins`;
  ui.buyNow?.addEventListener("click", () => {
    const price = state.auction.buy_now_price;
    if (price == null) return;
    if (!disarm) {
      ui.buyNow.textContent = `Confirm: buy now for ${formatCoins(price)} coins`;
      ui.buyNow.dataset.armed = "true";
      disarm = setTimeout(() => {
        disarm = null;
        ui.buyNow.textContent = buyLabel();
        delete ui.buyNow.dataset.armed;
      }, 5000);
      return;
    }
    clearTimeout(disarm);
    disarm = null;
    delete ui.buyNow.dataset.armed;
    ui.buyNow.textContent = buyLabel();
    placeBid(price, null);
  });
}

render();
setInterval(tick, 250);

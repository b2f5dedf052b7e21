// The lobby: the server rendered the cards; from here /ws/lobby/ keeps them live (price, leader,
// bids, new and finished lots) and the countdowns tick on the server's clock.

import { LobbySocket, remainingMs } from "/static/realtime/gavel.js";
import { flash, formatCoins, formatDuration, link, pageData, pageOffset, showConnection, toast } from "/static/core/ui.js";

const SOON_MS = 60_000;
const FINAL = new Set(["ended", "cancelled"]);

const data = pageData();
const list = document.getElementById("lots");
const empty = document.getElementById("lots-empty");
const template = document.getElementById("lot-template");
const sortSelect = document.getElementById("sort");
const badge = document.getElementById("conn");
const fallbackOffset = pageOffset(data.server_time);

/** Live and upcoming lots by id, then lots seen to finish while the page was open (shown greyed, last). */
let auctions = new Map(data.auctions.map((a) => [a.id, a]));
const finished = new Map();
let sort = data.sort;

const socket = new LobbySocket({
  onStatus: (status) => showConnection(badge, status),
  onState: (current, changed) => {
    auctions = current;
    if (changed && FINAL.has(changed.status)) finished.set(changed.id, changed);
    render(changed);
  },
  onFrame: (frame) => {
    if (frame.type === "outbid") {
      toast(["You were outbid: ", link(`/auctions/${frame.auction_id}/`, `lot #${frame.auction_id}`),
        ` is now at ${formatCoins(frame.current_price)} coins.`], { kind: "outbid" });
    } else if (frame.type === "result" && frame.outcome === "won") {
      toast(["You won ", link(`/auctions/${frame.auction_id}/`, `lot #${frame.auction_id}`),
        ` for ${formatCoins(frame.final_price)} coins.`], { kind: "won", ms: 0 });
    }
  },
});

const offset = () => (socket.rttMs == null ? fallbackOffset : socket.offsetMs);

function ordered() {
  const key = (a) => [a.status !== "live", Date.parse(a.status === "live" ? a.ends_at : a.starts_at), a.id];
  const compare = (x, y) => {
    if (sort === "bids" && x.bid_count !== y.bid_count) return y.bid_count - x.bid_count;
    const [kx, ky] = [key(x), key(y)];
    for (let i = 0; i < kx.length; i += 1) if (kx[i] !== ky[i]) return kx[i] < ky[i] ? -1 : 1;
    return 0;
  };
  const open = [...auctions.values()].sort(compare);
  const done = [...finished.values()].filter((a) => !auctions.has(a.id)).sort((x, y) => y.seq - x.seq);
  return [...open, ...done];
}

function field(card, name) {
  return card.querySelector(`[data-field="${name}"]`);
}

function fill(card, a) {
  card.className = `lot lot--${a.status}`;
  card.dataset.id = a.id;
  card.dataset.status = a.status;
  const article = card.querySelector("article");
  const title = field(card, "title");
  field(card, "title-wrap").id = `lot-${a.id}-title`;
  article.setAttribute("aria-labelledby", `lot-${a.id}-title`);
  title.href = `/auctions/${a.id}/`;
  title.textContent = a.title;
  const status = field(card, "status");
  status.className = `badge badge--${a.status}`;
  status.textContent = { live: "Live", scheduled: "Upcoming", ended: "Ended", cancelled: "Cancelled" }[a.status] ?? a.status;
  const sold = a.status === "ended" && a.final_price != null;
  field(card, "price-label").textContent = sold ? "Sold for" : a.current_price != null ? "Price" : "Opens at";
  const price = field(card, "price");
  const text = formatCoins(sold ? a.final_price : a.current_price ?? a.starting_price);
  if (price.textContent !== text) {
    if (price.textContent) flash(price);
    price.textContent = text;
  }
  field(card, "leader").textContent = (a.status === "ended" ? a.winner : a.leader) ?? "—";
  field(card, "bids").textContent = String(a.bid_count);
  card.dataset.endsAt = a.ends_at ?? "";
  card.dataset.startsAt = a.starts_at ?? "";
  tickCard(card);
}

function tickCard(card) {
  const clock = field(card, "countdown");
  const status = card.dataset.status;
  let text = "";
  let soon = false;
  if (status === "live") {
    const left = remainingMs(card.dataset.endsAt, offset());
    text = left > 0 ? `Ends in ${formatDuration(left)}` : "Ending…";
    soon = left < SOON_MS;
  } else if (status === "scheduled") {
    const left = remainingMs(card.dataset.startsAt, offset());
    text = left > 0 ? `Starts in ${formatDuration(left)}` : "Starting…";
  } else {
    text = status === "ended" ? "Ended" : "Cancelled";
  }
  if (clock.textContent !== text) clock.textContent = text;
  clock.classList.toggle("lot__time--soon", soon);
}

function render() {
  const existing = new Map([...list.children].map((card) => [Number(card.dataset.id), card]));
  const items = ordered();
  items.forEach((a, index) => {
    let card = existing.get(a.id);
    existing.delete(a.id);
    if (!card) card = template.content.firstElementChild.cloneNode(true);
    fill(card, a);
    if (list.children[index] !== card) list.insertBefore(card, list.children[index] ?? null);
  });
  for (const stale of existing.values()) stale.remove();
  empty.hidden = items.length > 0;
}

sortSelect.addEventListener("change", () => {
  sort = sortSelect.value;
  const url = new URL(window.location.href);
  url.searchParams.set("sort", sort);
  window.history.replaceState(null, "", url);
  render();
});

render();
setInterval(() => {
  for (const card of list.children) tickCard(card);
}, 250);

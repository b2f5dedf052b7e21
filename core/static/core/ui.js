// Small helpers the page scripts share: formatting, the connection badge, toasts. No dependencies.

const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** 1234567 -> "1,234,567" (the server formats the first render the same way). */
export function formatCoins(amount) {
  return amount == null ? "" : NUMBER.format(amount);
}

/** A countdown: "1h 02m", "4m 05s", "12s"; the same shape the server renders. */
export function formatDuration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (hours) return `${hours}h ${pad(minutes)}m`;
  if (minutes) return `${minutes}m ${pad(seconds)}s`;
  return `${seconds}s`;
}

/** An ISO time as the browser's local clock time, e.g. "14:03:27". */
export function formatClock(iso) {
  const when = Date.parse(iso);
  return Number.isNaN(when) ? "" : TIME.format(new Date(when));
}

/** The page's JSON island (`json_script`). */
export function pageData() {
  return JSON.parse(document.getElementById("page-data").textContent);
}

/**
 * A clock offset good enough until the socket has measured one (its first pong): the page's own
 * server_time against the moment the script ran. Errs by the page's load time, then is replaced.
 */
export function pageOffset(serverTimeIso) {
  const server = Date.parse(serverTimeIso);
  return Number.isNaN(server) ? 0 : server - Date.now();
}

const STATUS_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  catching_up: "Catching up…",
  closed: "Disconnected",
};

/** Show a socket status ("connecting", "live", "reconnecting", "catching_up", "closed") on the badge. */
export function showConnection(badge, status) {
  if (!badge) return;
  badge.className = `conn conn--${status}`;
  badge.dataset.status = status;
  badge.querySelector(".conn__text").textContent = STATUS_TEXT[status] ?? status;
}

/**
 * A toast in the page's aria-live region. `parts` are strings or nodes; it closes by itself after
 * `ms` (0: stays until closed), and with its button or Escape.
 */
export function toast(parts, { kind = "info", ms = 8000 } = {}) {
  const region = document.getElementById("toasts");
  const item = document.createElement("div");
  item.className = `toast toast--${kind}`;
  item.dataset.kind = kind;
  const text = document.createElement("p");
  text.append(...[].concat(parts));
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast__close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  item.addEventListener("keydown", (event) => event.key === "Escape" && remove());
  item.append(text, close);
  region.append(item);
  while (region.children.length > 4) region.firstElementChild.remove();
  if (ms) setTimeout(remove, ms);
  return item;
}

/** A link element, for toasts. */
export function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

/** Replay a CSS animation class on an element (price changes, extensions). */
export function flash(element, className = "flash") {
  if (!element) return;
  element.classList.remove(className);
  void element.offsetWidth; // restart the animation
  element.classList.add(className);
}

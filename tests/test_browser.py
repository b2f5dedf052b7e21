"""The pages in a real browser: Debian's Chromium driven by Playwright, against a real uvicorn node,
bid worker, default worker and beat on the test database.

Without /usr/bin/chromium (or Playwright) these tests skip, except in CI (CI=true), where they fail.

Two constraints shape this file:
- Playwright's sync API keeps an asyncio loop running in the test thread, and Django refuses ORM calls
  from a thread with a running loop. Every database call in a test body therefore goes through `orm(...)`,
  which runs it on a helper thread (committed data: these tests use `transactional_db`).
- The uvicorn process uses the real settings, whose password hashers do not include the tests' fast MD5,
  so the users who log in through the page form get a (cheap) PBKDF2 hash.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections

from auctions import services
from auctions.models import Auction
from core import clock
from core.models import User
from tests import procs

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync"]
PASSWORD = "browser-pass-42"
WAIT_MS = 10_000  # any single wait in a page; a test as a whole stays well under a minute
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = procs.ROOT / "docs" / "screenshots"


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Checked before the live stack starts (session fixtures are set up first, in this order)."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "Playwright is not installed (pip install -r requirements.txt)"
    if problem is None and not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run in CI: {problem}")
        pytest.skip(problem)
    return CHROMIUM


class Orm:
    """Runs database work on a thread of its own (see the module docstring)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orm")

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.pool.submit(fn, *args, **kwargs).result(timeout=60)

    def close(self) -> None:
        self.pool.submit(connections.close_all).result(timeout=10)
        self.pool.shutdown()


@pytest.fixture
def orm() -> Iterator[Orm]:
    runner = Orm()
    yield runner
    runner.close()


class Web:
    """One uvicorn node on a fixed port, which a test may stop and start again."""

    def __init__(self) -> None:
        self.port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.node: procs.Proc | None = None

    def start(self) -> None:
        self.node = procs.web_node("web", self.port)
        procs.wait_port(self.port)

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()


@pytest.fixture
def web(stack) -> Iterator[Web]:
    site = Web()
    site.start()
    yield site
    site.stop()


class Console:
    """Console errors and uncaught exceptions of every page, which must stay empty."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def watch(self, page, who: str) -> None:
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"{who}: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"{who}: uncaught {exc}"))

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def assert_clean(self) -> None:
        unexpected = [e for e in self.errors if not any(p.search(e) for p in self.allowed)]
        assert not unexpected, "console errors:\n" + "\n".join(unexpected)


class Browser:
    def __init__(self, browser, web: Web, orm: Orm) -> None:
        self.browser = browser
        self.web = web
        self.orm = orm
        self.console = Console()
        self.contexts: list = []

    def page(self, who: str, *, viewport: dict[str, int] = DESKTOP):
        context = self.browser.new_context(viewport=viewport, base_url=self.web.base)
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        page = context.new_page()
        self.console.watch(page, who)
        return page

    def user(self, username: str, *, staff: bool = False) -> User:
        return self.orm(_browser_user, username, staff)

    def login(self, username: str, path: str = "/", *, viewport: dict[str, int] = DESKTOP):
        """A new browser context, logged in through the login form, on `path` with its socket live."""
        page = self.page(username, viewport=viewport)
        page.goto(f"/login/?next={path}")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        at(page, path)
        if path == "/" or path.startswith("/auctions/"):
            live(page)
        return page


@pytest.fixture
def browser(chromium, web, orm) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS)
        session = Browser(chrome, web, orm)
        try:
            yield session
        finally:
            for context in session.contexts:
                context.close()
            chrome.close()


# --- helpers (the database ones run on the orm thread) ---------------------------------------


def _browser_user(username: str, staff: bool) -> User:
    # The web node checks passwords with the real settings' hashers; a low iteration count keeps it quick.
    user = User.objects.create_user(username=username, is_staff=staff, is_superuser=staff)
    hasher = PBKDF2PasswordHasher()
    User.objects.filter(pk=user.pk).update(password=hasher.encode(PASSWORD, hasher.salt(), iterations=1000))
    return user


def _auction(*, lasts: float = 120, starts_in: float = -1, **fields) -> Auction:
    now = clock.now()
    fields.setdefault("title", "Brass telescope")
    fields.setdefault("starting_price", 20)
    fields.setdefault("min_increment", 5)
    return services.auction_create(starts_at=now + timedelta(seconds=starts_in),
                                   ends_at=now + timedelta(seconds=starts_in + lasts), **fields)


def _bid(auction_id: int, username: str, amount: int, max_amount: int | None = None) -> None:
    """A bid from outside the page (another client), decided by the real bid worker."""
    user = User.objects.get(username=username)
    services.bid_submit(auction_id=auction_id, user=user, amount=amount, max_amount=max_amount)


def _auction_row(auction_id: int) -> Auction:
    return Auction.objects.get(pk=auction_id)


def at(page, path: str) -> None:
    """Wait until the page is at `path` (query string aside)."""
    page.wait_for_url(lambda url: urlsplit(url).path == path)


def live(page) -> None:
    page.locator("#conn[data-status='live']").wait_for()


def text_of(page, selector: str) -> str:
    """The element's text as written (no CSS text-transform), whitespace collapsed."""
    return " ".join((page.locator(selector).text_content() or "").split())


def wait_text(page, selector: str, expected: str) -> None:
    """Wait until `selector`'s text contains `expected`."""
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.textContent ?? '').includes(t)", arg=[selector, expected]
    )


def price(page) -> str:
    return text_of(page, "#price-amount")


def bid_from_page(page, amount: int, max_amount: int | None = None) -> None:
    page.get_by_label("Your bid (coins)").fill(str(amount))
    page.get_by_label("Proxy max (optional)").fill("" if max_amount is None else str(max_amount))
    page.get_by_role("button", name="Place bid").click()


def history_seqs(page) -> list[int]:
    return [int(s) for s in page.locator("#history li").evaluate_all("els => els.map(e => e.dataset.seq)")]


def remaining_ms(page) -> int:
    return int(page.locator("#countdown").get_attribute("data-remaining-ms") or 0)


# --- the tests -------------------------------------------------------------------------------


def test_two_bidders_see_each_other_live_and_the_outbid_one_gets_a_toast(browser):
    browser.user("alice")
    browser.user("bob")
    auction = browser.orm(_auction, title="Brass telescope")
    room = f"/auctions/{auction.pk}/"
    alice = browser.login("alice", room)
    bob = browser.login("bob", room, viewport=PHONE)
    assert price(alice) == price(bob) == "20"

    # alice bids with the keyboard only: focus the amount, type, Enter.
    alice.get_by_label("Your bid (coins)").focus()
    alice.keyboard.press("Control+A")
    alice.keyboard.type("20")
    alice.keyboard.press("Enter")
    wait_text(alice, "#bid-feedback", "accepted")
    wait_text(bob, "#leader", "alice")
    assert price(bob) == "20" and text_of(bob, "#bid-count") == "1"
    assert text_of(alice, "#my-status").startswith("You are leading")

    bid_from_page(bob, 30)
    alice.locator(".toast--outbid").wait_for()
    assert "30 coins" in text_of(alice, ".toast--outbid")
    wait_text(alice, "#price-amount", "30")
    assert alice.locator("#my-status").get_attribute("data-status") == "outbid"
    wait_text(bob, "#my-status", "You are leading")

    # alice comes back with a proxy max; bob's straight bid is beaten by it at once.
    bid_from_page(alice, 35, max_amount=100)
    bob.locator(".toast--outbid").wait_for()
    bid_from_page(bob, 50)
    wait_text(bob, "#bid-feedback", "outbid")
    for page in (alice, bob):
        wait_text(page, "#price-amount", "55")
        wait_text(page, "#leader", "alice")
        assert text_of(page, "#min-next") == "60"
        assert "alice" in page.locator("#leaderboard li").first.inner_text()
    wait_text(alice, "#my-status", "your max 100")
    assert history_seqs(alice) == history_seqs(bob) == [6, 5, 4, 3, 2]
    assert bob.locator("#history li").first.locator(".tag").inner_text() == "auto"
    browser.console.assert_clean()


def test_the_countdown_jumps_when_a_late_bid_extends_the_auction(browser):
    browser.user("alice")
    browser.user("bob")
    # The whole auction is inside the anti-sniping window: every accepted bid moves the end.
    auction = browser.orm(_auction, title="Last-minute lot", lasts=25, extend_window_s=25, extend_by_s=50)
    room = f"/auctions/{auction.pk}/"
    alice = browser.login("alice", room)
    bob = browser.login("bob", room, viewport=PHONE)
    assert 0 < remaining_ms(bob) <= 25_000
    ends_before = text_of(bob, "#ends-at")

    bid_from_page(alice, 20)
    bob.wait_for_function("() => Number(document.querySelector('#countdown').dataset.remainingMs) > 40000")
    wait_text(bob, "#extended", "Extended by")
    assert text_of(bob, "#ends-at") != ends_before
    assert re.fullmatch(r"\d\d?s|[01]m \d\ds", text_of(bob, "#countdown"))
    assert remaining_ms(alice) > 40_000

    # bob takes the lead; alice, outbid with under a minute left, is nudged.
    bid_from_page(bob, 25)
    alice.locator("#nudge").wait_for()
    assert "Ending soon and you are not winning" in text_of(alice, "#nudge")
    assert "30" in text_of(alice, "#nudge")
    assert bob.locator("#nudge").is_hidden()
    browser.console.assert_clean()


def test_the_room_survives_its_server_going_away_and_shows_every_bid_after(browser, web):
    browser.user("alice")
    for name in ("bob", "carol"):
        browser.user(name)
    auction = browser.orm(_auction, title="Resilient lot")
    room = f"/auctions/{auction.pk}/"
    alice = browser.login("alice", room)
    bid_from_page(alice, 20)
    wait_text(alice, "#bid-feedback", "accepted")
    alice.evaluate("() => { window.beforeDrop = true; }")  # gone if the page reloads

    web.stop()
    alice.locator("#conn[data-status='reconnecting']").wait_for()
    assert text_of(alice, "#conn") == "Reconnecting…"
    # While the page is cut off, two other clients bid; the bid worker decides them.
    browser.orm(_bid, auction.pk, "bob", 30)
    browser.orm(_bid, auction.pk, "carol", 40)
    procs.wait_for(lambda: browser.orm(_auction_row, auction.pk).bid_count == 3, timeout=10, what="bids decided")
    web.start()

    # Back without a reload, with nothing missed.
    alice.locator("#conn[data-status='live']").wait_for(timeout=20_000)
    assert alice.evaluate("() => window.beforeDrop") is True
    wait_text(alice, "#price-amount", "40")
    assert text_of(alice, "#leader") == "carol"
    assert text_of(alice, "#bid-count") == "3"
    assert alice.locator("#my-status").get_attribute("data-status") == "outbid"
    alice.wait_for_function("() => document.querySelectorAll('#history li').length === 3")
    assert history_seqs(alice) == [4, 3, 2]
    assert [t.split("\n")[0] for t in alice.locator("#history li .history__who strong").all_inner_texts()] == \
        ["carol", "bob", "alice (you)"]
    assert len(alice.locator("#leaderboard li").all()) == 3
    # ...and live again: the next bid arrives as it happens.
    browser.orm(_bid, auction.pk, "bob", 45)
    wait_text(alice, "#price-amount", "45")
    assert history_seqs(alice) == [5, 4, 3, 2]
    # The browser itself logs each refused reconnection attempt while the server is down.
    browser.console.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws/auctions/\d+/' failed")
    browser.console.assert_clean()


def test_the_wallet_shows_the_hold_and_then_the_settled_payment(browser):
    browser.user("alice")
    browser.orm(_browser_user, "sam", False)
    auction = browser.orm(_auction, title="Settled lot", seller="sam", lasts=15, extend_window_s=0)
    room = f"/auctions/{auction.pk}/"
    alice = browser.login("alice", room)
    bid_from_page(alice, 20, max_amount=60)
    wait_text(alice, "#bid-feedback", "accepted")

    alice.get_by_role("link", name="Wallet").click()
    at(alice, "/wallet/")
    assert text_of(alice, "[data-testid=balance]") == "1,000"
    assert text_of(alice, "[data-testid=held]") == "60"
    assert text_of(alice, "[data-testid=available]") == "940"
    hold = alice.locator("[data-testid=holds] tbody tr")
    assert hold.count() == 1 and "Settled lot" in hold.inner_text() and "60" in hold.inner_text()

    alice.goto(room)
    live(alice)
    # The end arrives live: the result panel and the `result` toast.
    alice.locator("#result[data-outcome='won']").wait_for(timeout=20_000)
    assert "You won! You pay 20 coins" in text_of(alice, "#result")
    alice.locator(".toast--won").wait_for()
    assert text_of(alice, "#status-badge") == "Ended"
    assert text_of(alice, "#leader-label") == "Winner" and text_of(alice, "#leader") == "alice (you)"
    assert alice.locator("#bid-form").is_hidden()

    alice.get_by_role("link", name="See your wallet").click()
    at(alice, "/wallet/")
    assert text_of(alice, "[data-testid=balance]") == "980"
    assert text_of(alice, "[data-testid=held]") == "0"
    assert text_of(alice, "[data-testid=available]") == "980"
    assert alice.locator("[data-testid=holds]").count() == 0
    settlement = alice.locator("[data-testid=statement] tbody tr").first.inner_text()
    assert "Auction settlement" in settlement and "Settled lot" in settlement
    assert "\u221220" in settlement and "980" in settlement
    browser.console.assert_clean()


def test_the_lobby_follows_prices_new_lots_and_sorts_without_reloading(browser):
    browser.user("alice")
    browser.user("bob")
    first = browser.orm(_auction, title="Ends first", lasts=60)
    busy = browser.orm(_auction, title="Busy lot", lasts=600)
    lobby = browser.page("anonymous")
    lobby.goto("/")
    live(lobby)
    titles = lambda: lobby.locator("#lots .lot__title").all_inner_texts()  # noqa: E731
    assert titles() == ["Ends first", "Busy lot"]

    browser.orm(_bid, busy.pk, "alice", 20)
    browser.orm(_bid, busy.pk, "bob", 25)
    card = lobby.locator(f"#lots li[data-id='{busy.pk}']")
    card.locator("[data-field=price]", has_text="25").wait_for()
    assert card.locator("[data-field=leader]").inner_text() == "bob"
    assert card.locator("[data-field=bids]").inner_text() == "2"

    lobby.get_by_label("Sort by").select_option("bids")
    assert titles() == ["Busy lot", "Ends first"]
    assert lobby.url.endswith("/?sort=bids")

    browser.orm(_auction, title="Brand new lot", starts_in=300, lasts=60)
    lobby.locator("#lots .lot__title", has_text="Brand new lot").wait_for()
    assert "Starts in" in lobby.locator("#lots li", has_text="Brand new lot").inner_text()
    browser.orm(services.auction_cancel, auction_id=first.pk)
    lobby.locator(f"#lots li[data-id='{first.pk}'][data-status='cancelled']").wait_for()
    browser.console.assert_clean()


def test_signing_up_bidding_and_every_page_without_a_console_error(browser):
    staff = browser.user("operator", staff=True)
    auction = browser.orm(_auction, title="Console-clean lot", buy_now_price=200)
    room = f"/auctions/{auction.pk}/"

    visitor = browser.page("visitor", viewport=PHONE)
    for path in ("/", room, "/login/", "/signup/"):
        visitor.goto(path)
        _assert_accessible_basics(visitor)
    visitor.goto(room)
    live(visitor)
    visitor.get_by_role("link", name="sign up", exact=True).click()
    visitor.get_by_label("Username").fill("newcomer")
    visitor.get_by_label("Password", exact=True).fill("a-long-pass-42")
    visitor.get_by_label("Password again").fill("a-long-pass-42")
    visitor.get_by_role("button", name="Sign up").click()
    at(visitor, room)
    live(visitor)
    assert text_of(visitor, "#my-status") == "You are not bidding"
    visitor.get_by_role("button", name="Buy now for 200 coins").click()
    visitor.get_by_role("button", name="Confirm: buy now for 200 coins").click()  # a second press buys
    visitor.locator("#result[data-outcome='won']").wait_for()
    assert "You won! You pay 200 coins" in text_of(visitor, "#result")
    visitor.goto("/wallet/")
    assert text_of(visitor, "[data-testid=balance]") == "800"
    _assert_accessible_basics(visitor)
    visitor.get_by_role("button", name="Log out").click()
    at(visitor, "/")
    visitor.get_by_role("link", name="Log in").wait_for()

    operator = browser.login(staff.username, "/")
    assert operator.get_by_role("link", name="Admin", exact=True).get_attribute("href") == "/admin/"
    operator.goto(room)
    live(operator)
    assert operator.get_by_role("link", name="manage this auction in the admin").is_visible()
    browser.console.assert_clean()


def _assert_accessible_basics(page) -> None:
    """Every visible form control has a label; nothing is wider than the screen."""
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
        .filter(el => !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim()))
        .map(el => el.outerHTML)""")
    assert not unlabeled, unlabeled
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "horizontal scroll"
    assert page.locator("html[lang=en]").count() == 1 and page.title()


def _demo(orm: Orm) -> tuple[int, int]:
    def seed() -> tuple[int, int]:
        watch = _auction(title="Vintage mechanical watch", description="Swiss, 1960s, keeps good time.",
                         starting_price=50, min_increment=5, lasts=600, buy_now_price=900)
        chair = _auction(title="Mid-century armchair", description="Teak frame, new upholstery.",
                         starting_price=100, min_increment=10, lasts=1800)
        _auction(title="Signed first edition", starting_price=20, starts_in=900, lasts=600)
        _auction(title="Brass telescope", starting_price=40, lasts=240)
        return watch.pk, chair.pk

    watch, chair = orm(seed)
    for who, amount, max_amount in (("alice", 50, None), ("bob", 60, 120), ("carol", 100, None),
                                    ("alice", 130, 200)):
        orm(_bid, watch, who, amount, max_amount)
    orm(_bid, chair, "bob", 100)
    procs.wait_for(lambda: orm(_auction_row, watch).bid_count >= 5, timeout=10, what="demo bids decided")
    return watch, chair


def test_screenshots_of_the_lobby_and_a_room_on_a_phone_and_a_desktop(browser, tmp_path):
    """Renders both pages at both sizes with live data. Saved into docs/screenshots/ with
    GAVEL_SCREENSHOTS=1 (the committed images come from that), else into a temporary directory."""
    out = SCREENSHOTS if os.environ.get("GAVEL_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    for name in ("alice", "bob", "carol"):
        browser.user(name)
    watch, _ = _demo(browser.orm)
    for size, viewport, who in (("desktop", DESKTOP, "alice"), ("phone", PHONE, "carol")):
        page = browser.login(who, "/", viewport=viewport)
        _assert_accessible_basics(page)
        page.screenshot(path=str(out / f"lobby-{size}.png"), full_page=size == "phone")
        page.goto(f"/auctions/{watch}/")
        live(page)
        page.locator("#history li").nth(4).wait_for()
        _assert_accessible_basics(page)
        page.screenshot(path=str(out / f"room-{size}.png"), full_page=True)
    browser.console.assert_clean()

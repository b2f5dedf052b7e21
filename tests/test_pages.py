"""The web pages with Django's test client: rendered on the server (titles and prices in the HTML
before any script runs), session login, signup and logout with CSRF, the wallet behind login.
The live behaviour in a real browser is tests/test_browser.py."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client

from auctions import services
from auctions.models import Auction
from core import ledger
from core.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-42"


def _bid(auction: Auction, user: User, amount: int, max_amount: int | None = None) -> None:
    services.bid_submit(auction_id=auction.pk, user=user, amount=amount, max_amount=max_amount)
    services.bids_decide_pending(auction_id=auction.pk)


def _html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _page_data(html: str) -> dict:
    match = re.search(r'<script id="page-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page carries its data for the script"
    return json.loads(match.group(1))


def _text(html: str) -> str:
    """The visible text, roughly: tags dropped, whitespace collapsed."""
    body = re.sub(r"<script.*?</script>|<template.*?</template>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


# --- lobby -----------------------------------------------------------------------------------


def test_lobby_lists_live_and_upcoming_auctions_with_price_leader_and_bids(make_user, make_auction):
    alice = make_user("alice")
    ledger.grant(username="alice", amount=5000)
    live = make_auction(title="Brass telescope", starting_price=40, min_increment=5)
    _bid(live, alice, 1250)
    make_auction(title="Oak desk", starts_in=120, lasts=60)
    gone = make_auction(title="Old lamp", lasts=5)
    services.auction_end(auction_id=gone.pk, now=gone.ends_at + timedelta(seconds=1))

    html = _html(Client().get("/"))
    text = _text(html)
    assert "Brass telescope" in text and "Oak desk" in text
    assert "Old lamp" not in text
    assert "1,250" in text and "alice" in text
    assert f'href="/auctions/{live.pk}/"' in html
    assert "Ends in" in text and "Starts in" in text
    assert [a["title"] for a in _page_data(html)["auctions"]] == ["Brass telescope", "Oak desk"]
    assert '<script type="module" src="/static/auctions/lobby.js">' in html


def test_lobby_sorts_by_ending_soon_or_by_most_bids(make_user, make_auction):
    bidders = [make_user(f"bidder{i}") for i in range(3)]
    make_auction(title="Ends first", lasts=60)
    busy = make_auction(title="Most bids", lasts=600)
    for i, bidder in enumerate(bidders):
        _bid(busy, bidder, 10 + i)

    def order(url: str) -> list[str]:
        html = _html(Client().get(url))
        return re.findall(r'data-field="title">([^<]+)</a>', html.split('<template id="lot-template">')[0])

    assert order("/") == ["Ends first", "Most bids"]
    assert order("/?sort=bids") == ["Most bids", "Ends first"]
    assert order("/?sort=nonsense") == ["Ends first", "Most bids"]


# --- auction room ----------------------------------------------------------------------------


def test_room_is_rendered_on_the_server_with_title_price_leader_history_and_board(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(title="Signed first edition", description="Fine copy.", starting_price=20,
                           min_increment=5)
    _bid(auction, alice, 20, max_amount=100)
    _bid(auction, bob, 50)  # alice's proxy answers at 55

    html = _html(Client().get(f"/auctions/{auction.pk}/"))
    text = _text(html)
    assert "<title>Signed first edition · Gavel</title>" in html
    assert "Signed first edition" in text and "Fine copy." in text
    assert re.search(r'id="price-amount">55<', html)
    assert re.search(r'id="leader">alice<', html)
    assert re.search(r'id="min-next">60<', html)
    assert "Log in" in text and "to bid" in text
    history = re.findall(r'data-seq="(\d+)"', html)
    assert history == ["4", "3", "2"]  # the three accepted bids, newest first (seq 1 is the start)
    data = _page_data(html)
    assert data["snapshot"]["seq"] == 4
    assert data["snapshot"]["auction"]["current_price"] == 55
    assert [e["username"] for e in data["snapshot"]["leaderboard"]] == ["alice", "bob"]
    assert data["me"] == {"username": None, "is_staff": False}


def test_room_shows_the_viewer_their_status_and_the_bid_form(make_user, make_auction):
    alice, bob = make_user("alice"), make_user("bob")
    auction = make_auction(min_increment=5, buy_now_price=500)
    client = Client()
    client.force_login(bob)
    html = _html(client.get(f"/auctions/{auction.pk}/"))
    assert 'id="bid-form"' in html and 'id="bid-max"' in html
    assert re.search(r'id="buy-now" class="button button--buy">Buy now for 500 coins', html)
    assert "You are not bidding" in _text(html)

    _bid(auction, alice, 20, max_amount=100)
    _bid(auction, bob, 50)
    html = _html(client.get(f"/auctions/{auction.pk}/"))
    assert "You have been outbid" in _text(html)
    assert re.search(r'id="buy-now"[^>]*hidden', html), "buy-now goes once a bid is accepted"
    client.force_login(alice)
    html = _html(client.get(f"/auctions/{auction.pk}/"))
    assert "You are leading · your max 100" in _text(html)
    assert _page_data(html)["me"] == {"username": "alice", "is_staff": False}


def test_a_seller_gets_no_bid_form_and_staff_get_admin_links(make_user, make_auction):
    seller = make_user("sam")
    staff = make_user("operator", staff=True)
    auction = make_auction(seller="sam")
    client = Client()
    client.force_login(seller)
    html = _html(client.get(f"/auctions/{auction.pk}/"))
    assert 'id="bid-form"' not in html and "Sellers cannot bid" in html
    assert "/admin/" not in html

    client.force_login(staff)
    html = _html(client.get(f"/auctions/{auction.pk}/"))
    assert f'href="/admin/auctions/auction/{auction.pk}/change/"' in html
    assert 'href="/admin/auctions/auction/?status__exact=live"' in html
    lobby = _html(client.get("/"))
    assert 'href="/admin/"' in lobby and 'href="/admin/auctions/auction/?status__exact=live"' in lobby


def test_room_of_an_ended_auction_shows_the_winner(make_user, make_auction):
    alice = make_user("alice")
    auction = make_auction(lasts=5, extend_window_s=0)
    _bid(auction, alice, 30)
    services.auction_end(auction_id=auction.pk, now=auction.ends_at + timedelta(seconds=1))
    client = Client()
    client.force_login(make_user("bob"))
    html = _html(client.get(f"/auctions/{auction.pk}/"))
    assert "Sold to alice for 30 coins" in _text(html)
    assert re.search(r'id="leader-label">Winner<', html) and re.search(r'id="leader">alice<', html)
    assert re.search(r'<form id="bid-form"[^>]* hidden>', html), "no bidding on a finished auction"


def test_room_escapes_what_users_typed(make_auction):
    auction = make_auction(title="<script>alert(1)</script>", description="</script><b>x</b>")
    html = _html(Client().get(f"/auctions/{auction.pk}/"))
    assert "<script>alert(1)" not in html and "<b>x</b>" not in html
    assert _page_data(html)["snapshot"]["auction"]["title"] == "<script>alert(1)</script>"


def test_an_unknown_auction_is_404(db):
    assert Client().get("/auctions/999999/").status_code == 404


# --- accounts --------------------------------------------------------------------------------


def test_wallet_needs_login(db):
    response = Client().get("/wallet/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/wallet/"


def test_wallet_shows_balance_holds_per_auction_and_the_statement(make_user, make_auction):
    alice = make_user("alice")
    make_user("sam")
    held = make_auction(title="Still running", lasts=600)
    won = make_auction(title="Won lot", seller="sam", lasts=5, extend_window_s=0)
    _bid(held, alice, 20, max_amount=100)
    _bid(won, alice, 30)
    services.auction_end(auction_id=won.pk, now=won.ends_at + timedelta(seconds=1))

    client = Client()
    client.force_login(alice)
    html = _html(client.get("/wallet/"))
    assert re.search(r'data-testid="balance">970<', html)
    assert re.search(r'data-testid="held">100<', html)
    assert re.search(r'data-testid="available">870<', html)
    holds = html.split('data-testid="holds"')[1].split("</table>")[0]
    assert "Still running" in holds and ">100<" in holds and "Won lot" not in holds
    statement = _text(html.split('data-testid="statement"')[1].split("</table>")[0])
    assert "Auction settlement · Won lot" in statement and "\u221230 970" in statement
    assert "Signup bonus" in statement and "+1,000 1,000" in statement


def test_signup_creates_the_account_with_the_bonus_and_logs_in(db):
    client = Client()
    assert "Create your account" in _html(client.get("/signup/"))
    response = client.post("/signup/", {"username": "newbie", "password1": "a-long-pass-42",
                                        "password2": "a-long-pass-42", "next": "/wallet/"})
    assert response.status_code == 302 and response["Location"] == "/wallet/"
    assert re.search(r'data-testid="balance">1,000<', _html(client.get("/wallet/")))


@pytest.mark.parametrize(
    ("username", "password1", "password2", "message"),
    [
        ("taken", "a-long-pass-42", "a-long-pass-42", "that username is taken"),
        ("newbie", "short", "short", "too short"),
        ("newbie", "a-long-pass-42", "another-pass-42", "The two passwords differ."),
        ("no spaces", "a-long-pass-42", "a-long-pass-42", "username must be"),
    ],
)
def test_signup_refuses_bad_input_and_says_why(make_user, username, password1, password2, message):
    make_user("taken")
    response = Client().post("/signup/", {"username": username, "password1": password1, "password2": password2})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not User.objects.filter(username="newbie").exists()


def test_login_redirects_to_a_local_next_and_refuses_a_wrong_password(make_user):
    make_user("alice")
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": "wrong", "next": "/wallet/"})
    assert response.status_code == 400 and "Please enter a correct username and password" in response.content.decode()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD, "next": "/wallet/"})
    assert response.status_code == 302 and response["Location"] == "/wallet/"
    assert "alice" in _html(client.get("/wallet/"))


def test_login_ignores_a_next_that_leaves_the_site(make_user):
    make_user("alice")
    response = Client().post("/login/", {"username": "alice", "password": PASSWORD,
                                         "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_logout_is_a_post(make_user):
    client = Client()
    client.force_login(make_user("alice"))
    assert client.get("/logout/").status_code == 405
    assert client.get("/wallet/").status_code == 200
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/wallet/").status_code == 302


def _csrf_token(client: Client, url: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', _html(client.get(url)))
    assert match, f"{url} has a CSRF token in its form"
    return match.group(1)


def test_every_form_is_csrf_protected(make_user):
    make_user("alice")
    client = Client(enforce_csrf_checks=True)
    assert client.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 403
    assert client.post("/signup/", {"username": "bob", "password1": "a-long-pass-42",
                                    "password2": "a-long-pass-42"}).status_code == 403

    token = _csrf_token(client, "/login/")
    response = client.post("/login/", {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert client.post("/logout/").status_code == 403, "logging out needs the token too"
    token = _csrf_token(client, "/wallet/")  # the logout form in the header
    assert client.post("/logout/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get("/wallet/").status_code == 302


def test_pages_serve_their_own_static_files(db):
    """No CDN: the pages' scripts and styles come from the platform."""
    html = _html(Client().get("/"))
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    # ...and what the page modules import.
    urls += ["/static/core/ui.js", "/static/realtime/gavel.js", "/static/auctions/room.js"]
    for url in urls:
        assert Client().get(url).status_code == 200, url
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)

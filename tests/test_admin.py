"""The operator's admin: every page renders, creation and actions go through the services, and
nothing that holds money can be edited by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.urls import reverse

from auctions import services
from auctions.models import Auction, AuctionEvent, Intake
from core import clock
from core.models import Account, Hold, Transfer, User
from tasks.schedule import BEAT_ENTRIES

pytestmark = pytest.mark.django_db


def _changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _act(client, model, action: str, objects, **extra):
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [o.pk for o in objects], **extra}
    return client.post(_changelist(model), data)


def _split(name: str, when: datetime) -> dict[str, str]:
    return {f"{name}_0": when.strftime("%Y-%m-%d"), f"{name}_1": when.strftime("%H:%M:%S")}


def _bid(auction: Auction, user: User, amount: int, max_amount: int | None = None) -> None:
    services.bid_submit(auction_id=auction.pk, user=user, amount=amount, max_amount=max_amount)
    services.bids_decide_pending(auction_id=auction.pk)


def _events(auction: Auction) -> list[str]:
    return list(AuctionEvent.objects.filter(auction=auction).order_by("seq").values_list("type", flat=True))


# --- pages -----------------------------------------------------------------------------------


def test_the_site_header_names_gavel_operations(admin_client):
    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "Gavel operations" in response.text


def test_every_registered_changelist_renders(admin_client, make_user, make_auction):
    make_user("seller")
    auction = make_auction(seller="seller")
    _bid(auction, make_user("bidder"), 20)

    for model in admin.site._registry:
        response = admin_client.get(_changelist(model))
        assert response.status_code == 200, model


def test_the_periodic_tasks_list_shows_gavels_beat_entries(admin_client):
    from django_celery_beat.models import PeriodicTask

    response = admin_client.get(_changelist(PeriodicTask))

    assert response.status_code == 200
    for name, *_ in BEAT_ENTRIES:
        assert name in response.text


def test_searching_and_filtering_the_lists_works(admin_client, make_user, make_auction):
    make_user("seller")
    make_auction(seller="seller", title="Blue vase")

    assert "Blue vase" in admin_client.get(_changelist(Auction), {"q": "seller"}).text
    assert "Blue vase" in admin_client.get(_changelist(Auction), {"status__exact": "live"}).text
    assert "Blue vase" not in admin_client.get(_changelist(Auction), {"outcome": "sold"}).text
    assert admin_client.get(_changelist(Transfer), {"q": "seller", "kind__exact": "signup_bonus"}).status_code == 200
    assert admin_client.get(_changelist(Hold), {"q": "seller"}).status_code == 200


def test_the_auction_page_shows_bids_events_and_the_reserve_read_only(admin_client, make_user, make_auction):
    make_user("seller")
    bidder = make_user("bidder")
    auction = make_auction(seller="seller", reserve_price=777)
    _bid(auction, bidder, 20, max_amount=50)

    response = admin_client.get(_url(Auction, "change", auction.pk))

    assert response.status_code == 200
    assert "777" in response.text
    assert "bid.accepted" in response.text
    assert 'name="current_price"' not in response.text
    assert 'name="status"' not in response.text
    assert 'name="title"' in response.text


def test_other_change_pages_render(admin_client, make_user):
    user = make_user("alice")
    transfer = Transfer.objects.filter(credit__user=user).get()

    assert admin_client.get(_url(User, "change", user.pk)).status_code == 200
    assert admin_client.get(_url(Account, "change", user.account.pk)).status_code == 200
    assert admin_client.get(_url(Transfer, "change", transfer.pk)).status_code == 200


def test_the_users_list_shows_balance_and_available(admin_client, make_user, make_auction):
    make_user("seller")
    alice = make_user("alice")
    _bid(make_auction(seller="seller"), alice, 300)

    response = admin_client.get(_changelist(User))

    assert response.status_code == 200
    row = next(r for r in response.context["cl"].result_list if r.username == "alice")
    assert (row.account.balance, row.account.available) == (1000, 700)
    assert "700" in response.text


# --- creating auctions -----------------------------------------------------------------------


def _add_form(**overrides) -> dict[str, object]:
    now = clock.now()
    data: dict[str, object] = {
        "title": "Old map",
        "description": "",
        "starting_price": "10",
        "min_increment": "1",
        "reserve_price": "",
        "buy_now_price": "",
        "extend_window_s": "30",
        "extend_by_s": "30",
        **_split("starts_at", now - timedelta(minutes=1)),
        **_split("ends_at", now + timedelta(hours=1)),
    }
    data.update(overrides)
    return data


def test_the_add_auction_page_renders_the_service_fields(admin_client):
    response = admin_client.get(_url(Auction, "add"))

    assert response.status_code == 200
    fields = set(response.context["adminform"].form.fields)
    assert {"title", "starts_at", "ends_at", "starting_price", "reserve_price", "seller"} <= fields
    assert not fields & {"status", "current_price", "hard_close_at", "winner"}


def test_adding_an_auction_with_a_past_start_creates_it_live_through_the_service(admin_client, make_user):
    seller = make_user("seller")

    response = admin_client.post(_url(Auction, "add"), _add_form(seller=str(seller.pk), reserve_price="50"))

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    auction = Auction.objects.get(title="Old map")
    assert auction.status == Auction.Status.LIVE
    assert auction.seller == seller and auction.reserve_price == 50
    assert Intake.objects.filter(auction=auction).exists()
    assert auction.hard_close_at > auction.ends_at
    assert _events(auction) == ["auction.started"]


def test_adding_an_auction_that_starts_later_schedules_it(admin_client):
    later = clock.now() + timedelta(hours=1)

    response = admin_client.post(
        _url(Auction, "add"),
        _add_form(**_split("starts_at", later), **_split("ends_at", later + timedelta(hours=1))),
    )

    assert response.status_code == 302
    auction = Auction.objects.get(title="Old map")
    assert auction.status == Auction.Status.SCHEDULED and auction.seller is None
    assert Intake.objects.filter(auction=auction).exists()
    assert _events(auction) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"buy_now_price": "5"}, "buy_now_price"),
        ({"starting_price": "0"}, "starting_price"),
        ({"starting_price": str(10**12 + 1)}, "starting_price"),
        ({"extend_by_s": "90000"}, "extend_by_s"),
    ],
)
def test_adding_an_auction_the_service_refuses_shows_the_error_and_creates_nothing(admin_client, overrides, field):
    response = admin_client.post(_url(Auction, "add"), _add_form(**overrides))

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not Auction.objects.exists()


def test_adding_an_auction_that_ends_in_the_past_is_refused(admin_client):
    past = clock.now() - timedelta(hours=1)

    response = admin_client.post(
        _url(Auction, "add"),
        _add_form(**_split("starts_at", past - timedelta(hours=1)), **_split("ends_at", past)),
    )

    assert response.status_code == 200
    assert "ends_at must be in the future" in str(response.context["adminform"].form.errors["ends_at"])
    assert not Auction.objects.exists()


def test_editing_an_auction_changes_only_its_title_and_description(admin_client, make_user, make_auction):
    make_user("seller")
    auction = make_auction(seller="seller", title="Lot")
    data = {
        "title": "Renamed lot",
        "description": "now with a frame",
        "current_price": "999",
        "status": "ended",
        "starting_price": "1",
    }
    for prefix in ("bids", "events"):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )

    response = admin_client.post(_url(Auction, "change", auction.pk), data)

    assert response.status_code == 302
    auction.refresh_from_db()
    assert (auction.title, auction.description) == ("Renamed lot", "now with a frame")
    assert (auction.status, auction.current_price, auction.starting_price) == (Auction.Status.LIVE, None, 10)


def test_auctions_cannot_be_deleted(admin_client, make_auction):
    auction = make_auction()

    assert admin_client.get(_url(Auction, "delete", auction.pk)).status_code == 403
    changelist = admin_client.get(_changelist(Auction))
    assert "delete_selected" not in str(changelist.context["action_form"].fields["action"].choices)
    assert Auction.objects.filter(pk=auction.pk).exists()


# --- auction actions -------------------------------------------------------------------------


def test_start_now_starts_a_scheduled_auction(admin_client, make_auction):
    auction = make_auction(starts_in=3600)

    response = _act(admin_client, Auction, "start_now", [auction])

    assert response.status_code == 302
    auction.refresh_from_db()
    assert auction.status == Auction.Status.LIVE
    assert _events(auction) == ["auction.started"]
    assert any("live" in m for m in _messages(response))


def test_end_now_ends_a_live_auction_and_settles_with_the_winner(admin_client, make_user, make_auction):
    seller, bidder = make_user("seller"), make_user("bidder")
    auction = make_auction(seller="seller")
    _bid(auction, bidder, 120, max_amount=300)

    response = _act(admin_client, Auction, "end_now", [auction])

    assert response.status_code == 302
    auction.refresh_from_db()
    assert auction.status == Auction.Status.ENDED
    assert (auction.winner, auction.final_price) == (bidder, 120)
    assert _events(auction)[-1] == "auction.ended"
    settlement = Transfer.objects.get(kind=Transfer.Kind.SETTLEMENT, auction_id=auction.pk)
    assert (settlement.debit.user, settlement.credit.user, settlement.amount) == (bidder, seller, 120)
    bidder.account.refresh_from_db()
    seller.account.refresh_from_db()
    assert (bidder.account.balance, bidder.account.held) == (880, 0)
    assert seller.account.balance == 1120
    assert any("won by bidder at 120" in m for m in _messages(response))


def test_the_winners_filter_lists_sold_auctions(admin_client, make_user, make_auction):
    make_user("seller")
    bidder = make_user("bidder")
    sold, unsold = make_auction(seller="seller", title="Sold lot"), make_auction(title="Unsold lot")
    _bid(sold, bidder, 50)
    _act(admin_client, Auction, "end_now", [sold, unsold])

    sold_page = admin_client.get(_changelist(Auction), {"outcome": "sold"})
    unsold_page = admin_client.get(_changelist(Auction), {"outcome": "unsold"})

    assert [a.title for a in sold_page.context["cl"].result_list] == ["Sold lot"]
    assert [a.title for a in unsold_page.context["cl"].result_list] == ["Unsold lot"]


def test_cancel_cancels_and_releases_every_hold(admin_client, make_user, make_auction):
    make_user("seller")
    bidder = make_user("bidder")
    auction = make_auction(seller="seller")
    _bid(auction, bidder, 100)
    assert Hold.objects.filter(auction_id=auction.pk, active=True).exists()

    response = _act(admin_client, Auction, "cancel", [auction])

    assert response.status_code == 302
    auction.refresh_from_db()
    assert auction.status == Auction.Status.CANCELLED
    assert _events(auction)[-1] == "auction.cancelled"
    assert not Hold.objects.filter(auction_id=auction.pk, active=True).exists()
    bidder.account.refresh_from_db()
    assert (bidder.account.balance, bidder.account.held) == (1000, 0)


def test_extend_moves_the_end_five_minutes_later(admin_client, make_auction):
    auction = make_auction(lasts=600)
    ends_at = auction.ends_at

    response = _act(admin_client, Auction, "extend_by_5_minutes", [auction])

    assert response.status_code == 302
    auction.refresh_from_db()
    assert auction.ends_at == ends_at + timedelta(minutes=5)
    assert auction.hard_close_at >= auction.ends_at
    assert _events(auction)[-1] == "auction.extended"


def test_an_action_reports_each_auctions_outcome_including_refusals(admin_client, make_auction):
    live, cancelled = make_auction(title="Live lot"), make_auction(title="Gone lot")
    services.auction_cancel(auction_id=cancelled.pk)

    response = _act(admin_client, Auction, "cancel", [live, cancelled])

    messages = _messages(response)
    assert any("Live lot" in m and "cancelled" in m for m in messages)
    assert any("Could not cancel" in m and "Gone lot" in m and "already cancelled" in m for m in messages)
    live.refresh_from_db()
    assert live.status == Auction.Status.CANCELLED


# --- accounts and grants ---------------------------------------------------------------------


def test_granting_coins_asks_for_an_amount_then_grants_it(admin_client, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    accounts = [alice.account, bob.account]

    form_page = _act(admin_client, Account, "grant_coins", accounts)

    assert form_page.status_code == 200
    assert 'name="amount"' in form_page.text
    assert not Transfer.objects.filter(kind=Transfer.Kind.GRANT).exists()

    response = _act(admin_client, Account, "grant_coins", accounts, apply="yes", amount="250", memo="launch party")

    assert response.status_code == 302
    grants = Transfer.objects.filter(kind=Transfer.Kind.GRANT).order_by("id")
    assert [(g.credit.user, g.amount, g.memo, g.created_by.username) for g in grants] == [
        (alice, 250, "launch party", "admin"),
        (bob, 250, "launch party", "admin"),
    ]
    alice.account.refresh_from_db()
    assert alice.account.balance == 1250
    assert sum("Granted 250 coins" in m for m in _messages(response)) == 2


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "1.5", str(10**12 + 1), ""])
def test_an_invalid_grant_amount_changes_nothing(admin_client, make_user, amount):
    alice = make_user("alice")

    response = _act(admin_client, Account, "grant_coins", [alice.account], apply="yes", amount=amount)

    assert response.status_code == 200
    assert "amount" in response.context["form"].errors
    assert not Transfer.objects.filter(kind=Transfer.Kind.GRANT).exists()
    alice.account.refresh_from_db()
    assert alice.account.balance == 1000


def test_granting_to_system_accounts_is_refused(admin_client):
    mint = Account.objects.get(kind=Account.Kind.MINT)
    balance = mint.balance

    response = _act(admin_client, Account, "grant_coins", [mint], apply="yes", amount="100")

    assert response.status_code == 302
    assert any("System accounts cannot receive grants" in m for m in _messages(response))
    assert not Transfer.objects.filter(kind=Transfer.Kind.GRANT).exists()
    mint.refresh_from_db()
    assert mint.balance == balance


def test_a_grant_to_users_and_a_system_account_skips_the_system_account(admin_client, make_user):
    alice = make_user("alice")
    house = Account.objects.get_or_create(kind=Account.Kind.HOUSE, user=None)[0]

    response = _act(admin_client, Account, "grant_coins", [alice.account, house], apply="yes", amount="10")

    assert response.status_code == 302
    assert list(Transfer.objects.filter(kind=Transfer.Kind.GRANT).values_list("credit_id", flat=True)) == [
        alice.account.pk
    ]
    assert any("Skipped <house>" in m for m in _messages(response))


def test_staff_without_the_change_account_permission_cannot_grant(client, make_user):
    from django.contrib.auth.models import Permission

    clerk = make_user("clerk", staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_account"))
    client.force_login(clerk)

    changelist = client.get(_changelist(Account))
    _act(client, Account, "grant_coins", [clerk.account], apply="yes", amount="100")

    assert changelist.status_code == 200
    assert changelist.context["action_form"] is None
    assert not Transfer.objects.filter(kind=Transfer.Kind.GRANT).exists()


def test_accounts_cannot_be_added_changed_or_deleted(admin_client, make_user):
    alice = make_user("alice")

    assert admin_client.get(_url(Account, "add")).status_code == 403
    assert admin_client.post(_url(Account, "change", alice.account.pk), {"balance": "10"}).status_code == 403
    assert admin_client.get(_url(Account, "delete", alice.account.pk)).status_code == 403
    alice.account.refresh_from_db()
    assert alice.account.balance == 1000


# --- the ledger ------------------------------------------------------------------------------


def test_ledger_transfers_can_be_viewed_but_not_added_changed_or_deleted(admin_client, make_user):
    alice = make_user("alice")
    transfer = Transfer.objects.get(kind=Transfer.Kind.SIGNUP_BONUS, credit__user=alice)

    assert admin_client.get(_url(Transfer, "change", transfer.pk)).status_code == 200
    assert admin_client.post(_url(Transfer, "change", transfer.pk), {"amount": "5"}).status_code == 403
    assert admin_client.get(_url(Transfer, "delete", transfer.pk)).status_code == 403
    assert admin_client.get(_url(Transfer, "add")).status_code == 403
    assert admin_client.get(_changelist(Transfer)).context["action_form"] is None  # no "delete selected"
    transfer.refresh_from_db()
    assert transfer.amount == 1000


def test_holds_can_be_viewed_but_not_changed(admin_client, make_user, make_auction):
    make_user("seller")
    _bid(make_auction(seller="seller"), make_user("bidder"), 40)
    hold = Hold.objects.get()

    assert admin_client.get(_url(Hold, "change", hold.pk)).status_code == 200
    assert admin_client.post(_url(Hold, "change", hold.pk), {"active": ""}).status_code == 403
    assert admin_client.get(_url(Hold, "delete", hold.pk)).status_code == 403

"""The account pages: log in, sign up, log out (Django session auth) and the wallet.

Views validate and delegate: registration is `core.users.user_register` (the same checks as the API),
coins are read from the ledger's own rows. The session these pages set is what the room and lobby
sockets authenticate with.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from auctions.models import Auction
from core import ledger
from core.errors import InvalidInput
from core.models import Account, Hold, User
from core.users import user_register

STATEMENT_LINES = 200


def coins(amount: int | None) -> str:
    """1234567 -> "1,234,567", as the page scripts format amounts (Intl.NumberFormat, en-US)."""
    return "" if amount is None else f"{amount:,}"


def signed_coins(amount: int) -> str:
    return ("+" if amount > 0 else "\u2212" if amount < 0 else "") + coins(abs(amount))


def _next_url(request: HttpRequest) -> str:
    """Where to go after logging in: `next` if it stays on this site, else the lobby."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                       require_https=request.is_secure()):
        return target
    return "/"


@require_http_methods(["GET", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    form = AuthenticationForm(request, data=request.POST if request.method == "POST" else None, label_suffix="")
    if request.method == "POST" and form.is_valid():
        login(request, form.get_user())
        return HttpResponseRedirect(_next_url(request))
    return render(request, "core/login.html", {"form": form, "next": _next_url(request)},
                  status=400 if form.is_bound else 200)


class SignupForm(forms.Form):
    username = forms.CharField(
        max_length=32, help_text="3 to 32 letters, digits, '_', '.' or '-'.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autocapitalize": "none", "autofocus": True}),
    )
    password1 = forms.CharField(
        label="Password", strip=False, help_text="At least 8 characters, not too common.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="Password again", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("password1") and data.get("password2") and data["password1"] != data["password2"]:
            self.add_error("password2", "The two passwords differ.")
        return data


@require_http_methods(["GET", "POST"])
def signup_page(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST if request.method == "POST" else None, label_suffix="")
    if request.method == "POST" and form.is_valid():
        try:
            user = user_register(username=form.cleaned_data["username"], password=form.cleaned_data["password1"])
        except InvalidInput as exc:
            field = (exc.details or {}).get("field")
            form.add_error("password1" if field == "password" else "username", exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return HttpResponseRedirect(_next_url(request))
    return render(request, "core/signup.html",
                  {"form": form, "next": _next_url(request), "bonus": settings.SIGNUP_BONUS},
                  status=400 if form.is_bound else 200)


@require_POST
def logout_page(request: HttpRequest) -> HttpResponse:
    # POST only (with CSRF): a link or an image cannot log someone out.
    logout(request)
    return HttpResponseRedirect("/")


@login_required
def wallet_page(request: HttpRequest) -> HttpResponse:
    user: User = request.user
    account = Account.objects.filter(user=user).first() or ledger.account_open(user=user)
    holds = list(Hold.objects.filter(account=account, active=True).order_by("-created_at"))
    lines = ledger.account_statement(account=account, limit=STATEMENT_LINES)
    auction_ids = {h.auction_id for h in holds} | {
        line.transfer.auction_id for line in lines if line.transfer.auction_id is not None
    }
    titles = dict(Auction.objects.filter(pk__in=auction_ids).values_list("pk", "title"))
    return render(request, "core/wallet.html", {
        "account": {"balance": coins(account.balance), "held": coins(account.held),
                    "available": coins(account.available)},
        "holds": [{"auction_id": h.auction_id, "title": titles.get(h.auction_id, ""), "amount": coins(h.amount),
                   "since": h.created_at} for h in holds],
        "statement": [_statement_line(line, titles) for line in lines],
        "statement_limit": STATEMENT_LINES,
    })


def _statement_line(line: ledger.StatementLine, titles: dict[int, str]) -> dict[str, Any]:
    """One statement line for the template (the same signs as GET /api/me/ledger)."""
    t = line.transfer
    return {
        "id": t.pk,
        "kind": t.get_kind_display(),
        "memo": t.memo,
        "amount": signed_coins(line.amount),
        "outgoing": line.outgoing,
        "balance_after": coins(line.balance_after),
        "auction_id": t.auction_id,
        "title": titles.get(t.auction_id, "") if t.auction_id is not None else "",
        "created_at": t.created_at,
    }

"""The operator's view of users and coins.

Balances are never edited by hand: accounts, transfers and holds are read-only here, and the
only way coins move from the admin is the "Grant coins" action, which calls `core.ledger.grant`
(a ledger transfer from the mint, recorded with the operator who made it).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin
from django.template.response import TemplateResponse

from core import ledger
from core.models import Account, Hold, Transfer, User

MAX_GRANT = 10**12

admin.site.site_header = "Gavel operations"
admin.site.site_title = "Gavel operations"
admin.site.index_title = "Run the auction house"


class NoEditsMixin:
    """Viewable, never added, changed or deleted through the admin (models and inlines alike)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(NoEditsMixin, admin.ModelAdmin):
    show_full_result_count = False  # these tables grow with every bid; one COUNT per page is enough


def _coins(account: Account | None, attribute: str) -> int | None:
    return getattr(account, attribute) if account is not None else None


@admin.register(User)
class GavelUserAdmin(UserAdmin):
    list_display = (*UserAdmin.list_display, "balance", "available")
    list_select_related = ("account",)
    fieldsets = (*UserAdmin.fieldsets, ("Coins", {"fields": ("balance", "held", "available")}))
    readonly_fields = ("balance", "held", "available")

    @staticmethod
    def _account(user: User) -> Account | None:
        return getattr(user, "account", None)

    @admin.display(description="balance")
    def balance(self, user: User) -> int | None:
        return _coins(self._account(user), "balance")

    @admin.display(description="held")
    def held(self, user: User) -> int | None:
        return _coins(self._account(user), "held")

    @admin.display(description="available")
    def available(self, user: User) -> int | None:
        return _coins(self._account(user), "available")


class GrantCoinsForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=MAX_GRANT, help_text=f"Whole coins, 1 to {MAX_GRANT:,}.")
    memo = forms.CharField(max_length=200, required=False, help_text="Shown in the ledger; defaults to “grant”.")


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "kind", "balance", "held", "available")
    list_filter = ("kind",)
    list_select_related = ("user",)
    search_fields = ("user__username",)
    readonly_fields = ("user", "kind", "balance", "held", "available", "created_at")
    fields = readonly_fields
    actions = ("grant_coins",)

    @admin.display(description="available")
    def available(self, account: Account) -> int:
        return account.available

    def has_grant_permission(self, request) -> bool:
        # Accounts are never edited as rows, so "change account" is the permission that means
        # "may change balances", which only a grant can do.
        return request.user.has_perm("core.change_account")

    @admin.action(description="Grant coins", permissions=["grant"])
    def grant_coins(self, request, queryset):
        """Standard intermediate action: the first post shows a form, the second (with `apply`)
        grants to each selected user account in its own transaction and reports each."""
        accounts = list(queryset.select_related("user").order_by("id"))
        users = [a for a in accounts if a.kind == Account.Kind.USER and a.user_id is not None]
        skipped = [a for a in accounts if a not in users]
        if not users:
            self.message_user(request, "System accounts cannot receive grants; select user accounts.", messages.ERROR)
            return None

        form = GrantCoinsForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/core/account/grant_coins.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Grant coins",
                    "opts": self.model._meta,
                    "form": form,
                    "accounts": accounts,
                    "users": users,
                    "skipped": skipped,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "media": self.media + form.media,
                },
            )

        amount, memo = form.cleaned_data["amount"], form.cleaned_data["memo"]
        for account in skipped:
            self.message_user(request, f"Skipped {account}: system accounts cannot receive grants.", messages.WARNING)
        for account in users:
            try:
                transfer = ledger.grant(username=account.user.username, amount=amount, memo=memo, by=request.user)
            except ledger.LedgerError as exc:
                self.message_user(request, f"Could not grant {amount} coins to {account}: {exc}.", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Granted {amount} coins to {account} (transfer #{transfer.pk}); "
                    f"balance now {transfer.credit_balance_after}.",
                    messages.SUCCESS,
                )
        return None


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "kind", "debit", "credit", "amount", "auction_id", "memo", "created_by")
    list_filter = ("kind",)
    list_select_related = ("debit__user", "credit__user", "created_by")
    search_fields = ("=id", "=auction_id", "memo", "debit__user__username", "credit__user__username")
    date_hierarchy = "created_at"
    ordering = ("-id",)


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "auction_id", "amount", "active", "created_at", "released_at")
    list_filter = ("active",)
    list_select_related = ("account__user",)
    search_fields = ("=auction_id", "account__user__username")
    ordering = ("-id",)

"""The operator's view of auctions.

Nothing here writes auction state itself: creating goes through `auction_create` (via
AuctionCreateForm) and every action calls one service. What the services own (prices, the
leader, the winner, status, timers) is read-only; only the lot's title and description can be
edited by hand, and they are saved alone so that a concurrent bid decision is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from auctions import services
from auctions.forms import AuctionCreateForm
from auctions.models import Auction, AuctionEvent, Bid
from core import clock
from core.admin import NoEditsMixin
from core.errors import ServiceError

EDITABLE_FIELDS = ("title", "description")
EXTEND_STEP = timedelta(minutes=5)


class HasWinnerFilter(admin.SimpleListFilter):
    """Who won what: sold lots, and ended lots that found no buyer (no bid, or reserve not met)."""

    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("sold", "Sold (has a winner)"), ("unsold", "Ended without a winner")]

    def queryset(self, request, queryset):
        if self.value() == "sold":
            return queryset.filter(winner__isnull=False)
        if self.value() == "unsold":
            return queryset.filter(status=Auction.Status.ENDED, winner__isnull=True)
        return queryset


class ReadOnlyInline(NoEditsMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


class BidInline(ReadOnlyInline):
    model = Bid
    fields = readonly_fields = (
        "position",
        "bidder",
        "amount",
        "max_amount",
        "status",
        "reason",
        "seq",
        "received_at",
        "decided_at",
    )
    ordering = ("position",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("bidder")


class EventInline(ReadOnlyInline):
    model = AuctionEvent
    fields = readonly_fields = ("seq", "type", "at", "data")
    ordering = ("seq",)


@admin.register(Auction)
class AuctionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "title",
        "status",
        "seller",
        "starts_at",
        "ends_at",
        "current_price",
        "leader",
        "bid_count",
        "winner",
        "final_price",
        "reserve_price",
    )
    list_display_links = ("id", "title")
    list_filter = ("status", HasWinnerFilter)
    list_select_related = ("seller", "leader", "winner")
    search_fields = ("=id", "title", "seller__username", "leader__username", "winner__username")
    date_hierarchy = "starts_at"
    autocomplete_fields = ("seller",)
    actions = ("start_now", "end_now", "cancel", "extend_by_5_minutes")

    add_form = AuctionCreateForm
    add_fieldsets = (
        (None, {"fields": ("title", "description", "seller")}),
        ("Schedule", {"fields": ("starts_at", "ends_at", "extend_window_s", "extend_by_s")}),
        ("Prices", {"fields": ("starting_price", "min_increment", "reserve_price", "buy_now_price")}),
    )
    fieldsets = (
        (None, {"fields": ("title", "description", "seller", "status")}),
        (
            "Schedule",
            {
                "fields": (
                    "starts_at",
                    "ends_at",
                    "hard_close_at",
                    "extend_window_s",
                    "extend_by_s",
                    "created_at",
                    "started_at",
                    "ended_at",
                )
            },
        ),
        ("Prices", {"fields": ("starting_price", "min_increment", "reserve_price", "buy_now_price")}),
        ("Bidding", {"fields": ("current_price", "leader", "bid_count", "seq", "winner", "final_price")}),
        ("Timers", {"classes": ("collapse",), "fields": ("end_version", "armed_start", "armed_end_version")}),
    )
    inlines = (BidInline, EventInline)

    # --- forms: add through the service, change only the lot's text ----------------------------

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return tuple(
            f.name for f in Auction._meta.concrete_fields if f.name not in EDITABLE_FIELDS and not f.primary_key
        )

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def save_model(self, request, obj, form, change):
        # Adding: AuctionCreateForm already created the auction through the service.
        if change:
            fields = [name for name in form.changed_data if name in EDITABLE_FIELDS]
            if fields:
                obj.save(update_fields=fields)

    def has_delete_permission(self, request, obj=None):
        # Auctions are records of bids and payments: cancel one instead.
        return False

    # --- actions: one service call per auction, one message per outcome ------------------------

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[Auction], verb: str, call: Callable[[Auction], Auction]
    ) -> None:
        for auction in queryset.order_by("id"):
            try:
                result = call(auction)
            except ServiceError as exc:
                self.message_user(request, f"Could not {verb} {auction}: {exc.message}.", messages.ERROR)
            else:
                self.message_user(request, f"{auction}: {_describe(result)}.", messages.SUCCESS)

    @admin.action(description="Start now", permissions=["change"])
    def start_now(self, request, queryset):
        self._apply(request, queryset, "start", lambda a: services.auction_start_now(auction_id=a.pk))

    @admin.action(description="End now (decide pending bids and settle)", permissions=["change"])
    def end_now(self, request, queryset):
        self._apply(
            request, queryset, "end", lambda a: services.auction_reschedule_end(auction_id=a.pk, ends_at=clock.now())
        )

    @admin.action(description="Cancel (release every hold, no coins move)", permissions=["change"])
    def cancel(self, request, queryset):
        self._apply(request, queryset, "cancel", lambda a: services.auction_cancel(auction_id=a.pk))

    @admin.action(description="Extend by 5 minutes", permissions=["change"])
    def extend_by_5_minutes(self, request, queryset):
        self._apply(
            request,
            queryset,
            "extend",
            lambda a: services.auction_reschedule_end(auction_id=a.pk, ends_at=a.ends_at + EXTEND_STEP),
        )


def _describe(auction: Auction) -> str:
    """What the operator needs to know about an auction right after acting on it."""
    if auction.status == Auction.Status.ENDED:
        if auction.winner_id is None:
            return "ended without a winner"
        return f"ended, won by {auction.winner} at {auction.final_price}"
    if auction.status == Auction.Status.LIVE:
        return f"live, ends at {auction.ends_at:%Y-%m-%d %H:%M:%S} UTC"
    if auction.status == Auction.Status.SCHEDULED:
        return f"scheduled, ends at {auction.ends_at:%Y-%m-%d %H:%M:%S} UTC"
    return auction.status

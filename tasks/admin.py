"""The operator's view of bid workers: an admin page (there is no model for workers; they live in
Redis) at /admin/bid-workers/, linked from the admin's index.

GET lists every bid worker (tasks.operations.bid_workers_overview). POST runs one operation,
`move` or `ring`, reports it as a message and redirects back (post/redirect/get). The page is
wrapped by `admin.site.admin_view` (core/urls.py): staff only, CSRF checked; operations also need
the permission to change auctions, as the auction admin's actions do. Nothing an operator sends
or a vanished worker or auction can cause is a 500: each refusal is a message.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from redis.exceptions import RedisError

from tasks import operations

log = logging.getLogger(__name__)

admin.site.index_template = "admin/tasks/index.html"  # the index links this page

CHANGE_AUCTIONS = "auctions.change_auction"


class OperationForm(forms.Form):
    op = forms.ChoiceField(choices=[("move", "move"), ("ring", "ring")])
    auction = forms.IntegerField(min_value=1)
    worker = forms.CharField(max_length=255, required=False)

    def clean(self):
        data = super().clean()
        if data.get("op") == "move" and not data.get("worker"):
            raise forms.ValidationError("Choose the bid worker to move the auction to.")
        return data


def bid_workers_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        _operate(request)
        return HttpResponseRedirect(reverse("admin_bid_workers"))
    overview, error = None, None
    try:
        overview = operations.bid_workers_overview()
    except RedisError as exc:
        log.warning("bid workers page: Redis unavailable", exc_info=True)
        error = f"Redis is unreachable, so the assignment cannot be read ({type(exc).__name__}). Try again shortly."
    live = overview.live_names if overview else []
    return TemplateResponse(request, "admin/tasks/bid_workers.html", {
        **admin.site.each_context(request),
        "title": "Bid workers",
        "error": error,
        # Each worker with the live workers its auctions can move to (any but itself).
        "workers": [(w, [n for n in live if n != w.name]) for w in overview.workers] if overview else [],
        "unassigned": overview.unassigned if overview else [],
        "live": live,
        "can_operate": request.user.has_perm(CHANGE_AUCTIONS),
    })


def _operate(request: HttpRequest) -> None:
    if not request.user.has_perm(CHANGE_AUCTIONS):
        messages.error(request, "You may look at bid workers but not move or ring auctions "
                                "(that needs the permission to change auctions).")
        return
    form = OperationForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, f"Nothing done: {problems}")
        return
    op, auction_id, worker = form.cleaned_data["op"], form.cleaned_data["auction"], form.cleaned_data["worker"]
    try:
        if op == "move":
            moved = operations.auction_move(auction_id=auction_id, worker=worker)
            messages.success(request, _moved_message(moved))
        else:
            rung = operations.auction_ring(auction_id=auction_id)
            messages.success(request, _rung_message(rung))
    except operations.OperationError as exc:
        messages.error(request, str(exc))
    except RedisError as exc:
        log.warning("bid workers page: %s of auction %s failed", op, auction_id, exc_info=True)
        messages.error(request, f"Nothing done: Redis is unreachable ({type(exc).__name__}). Try again shortly.")


def _moved_message(moved: operations.Moved) -> str:
    if moved.previous == moved.worker:
        return f"{moved.auction} stays on {moved.worker}, now pinned there."
    return (f"{moved.auction} moved from {moved.previous or 'no bid worker'} to {moved.worker}, and pinned there: "
            "rebalancing leaves it alone while that worker lives.")


def _rung_message(rung: operations.Rung) -> str:
    bids = f"{rung.pending} pending bid{'' if rung.pending == 1 else 's'}"
    if rung.consumer is None:
        return f"Rang {rung.auction} ({bids}), but no live bid worker consumes it yet: they are decided once one does."
    return f"Rang {rung.auction}: {rung.consumer} decides its {bids} now."

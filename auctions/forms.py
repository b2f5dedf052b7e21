"""Forms of the operator's edge (the admin). They collect input; the services decide."""

from __future__ import annotations

from django import forms

from auctions import services
from auctions.models import Auction
from core.errors import ServiceError


class AuctionCreateForm(forms.ModelForm):
    """The admin's "add auction" form. Validating it creates the auction through
    `services.auction_create`, which owns the rules (dates, prices, the seller) and what comes
    with a new auction (its Intake row, hard close, an immediate start, the doorbell). A refusal
    lands on the field it names, so the operator sees it on the form and nothing is created.

    The service runs where a ModelForm would validate its instance (`_post_clean`, the hook
    Django's own UserCreationForm uses), only after every field is clean. The admin wraps the
    whole add view in one transaction, so the doorbell and the lobby update go out after it commits.
    """

    class Meta:
        model = Auction
        fields = [
            "title",
            "description",
            "seller",
            "starts_at",
            "ends_at",
            "starting_price",
            "min_increment",
            "reserve_price",
            "buy_now_price",
            "extend_window_s",
            "extend_by_s",
        ]
        help_texts = {
            "starts_at": "UTC. A start in the past starts the auction at once.",
            "ends_at": "UTC. Bids may extend it (anti-sniping), up to the hard close.",
            "reserve_price": "Never shown to bidders; below it the auction ends without a winner.",
            "buy_now_price": "Offered until the first accepted bid.",
            "extend_window_s": "A bid accepted this many seconds before the end extends it; 0 disables.",
            "extend_by_s": "How far past such a bid the end moves.",
        }

    def _post_clean(self) -> None:
        if self.errors:
            return
        data = self.cleaned_data
        seller = data.get("seller")
        try:
            self.instance = services.auction_create(
                title=data["title"],
                description=data.get("description") or "",
                seller=seller.get_username() if seller else None,
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
                starting_price=data["starting_price"],
                min_increment=data["min_increment"],
                reserve_price=data.get("reserve_price"),
                buy_now_price=data.get("buy_now_price"),
                extend_window_s=data["extend_window_s"],
                extend_by_s=data["extend_by_s"],
            )
        except ServiceError as exc:
            field = (exc.details or {}).get("field")
            self.add_error(field if field in self.fields else None, exc.message)

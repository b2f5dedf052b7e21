"""The product's URLs, with the contract's bid endpoint answered by the baseline (first match wins)."""

from django.urls import path

from bench.baselines import edges
from core.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    path("api/auctions/<int:auction_id>/bids", edges.bid_create),
    *product_urlpatterns,
]

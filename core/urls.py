from django.contrib import admin
from django.urls import path

from auctions import pages as auction_pages
from core import pages as account_pages
from core.api import api
from core.metrics import metrics_view
from tasks.admin import bid_workers_view

urlpatterns = [
    # Bid workers have no model; their page is the admin's all the same (staff only, CSRF).
    path("admin/bid-workers/", admin.site.admin_view(bid_workers_view), name="admin_bid_workers"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("metrics", metrics_view, name="metrics"),
    # The web pages (server-rendered, then kept live by their sockets).
    path("", auction_pages.lobby_page, name="lobby"),
    path("auctions/<int:auction_id>/", auction_pages.room_page, name="room"),
    path("wallet/", account_pages.wallet_page, name="wallet"),
    path("login/", account_pages.login_page, name="login"),
    path("signup/", account_pages.signup_page, name="signup"),
    path("logout/", account_pages.logout_page, name="logout"),
]

"""`manage.py seed_demo`: demo users and auctions for `make run`, on an empty database only.

Idempotent: once any user exists it changes nothing and only prints how to log in, so it is safe
to run on every start (the launcher does) and never touches a database someone already uses.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from auctions import services
from auctions.models import Auction
from core import clock
from core.models import User

DEMO_PASSWORD = "gavel-demo-42"
BIDDERS = ("alice", "bob", "carol")
SELLER = "sam"
ADMIN = "admin"


def _default_base_url() -> str:
    host = os.environ.get("HOST") or "127.0.0.1"
    if host in {"0.0.0.0", "::"}:
        host = "127.0.0.1"
    return f"http://{host}:{os.environ.get('PORT') or '8000'}"


class Command(BaseCommand):
    help = "Create demo users and auctions if the database has no users yet; print how to log in."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--base-url", default=_default_base_url(),
                            help="where the site is served, for the printed examples (default from HOST/PORT)")

    def handle(self, *args, base_url: str, **options) -> None:
        base_url = base_url.rstrip("/")
        # System accounts (mint, house) have no user row, so any user means someone was here.
        if User.objects.exists():
            self.already_seeded(base_url)
            return
        admin_password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        with transaction.atomic():
            auctions = self.seed(admin_password)
        shown = "(from DEMO_ADMIN_PASSWORD)" if os.environ.get("DEMO_ADMIN_PASSWORD") else admin_password
        self.stdout.write("Demo data created.")
        self.stdout.write(f"  Admin:    {base_url}/admin/  user {ADMIN}  password {shown}")
        self.logins()
        for auction in auctions:
            self.stdout.write(f"  Auction #{auction.pk}: {auction.title} ({auction.status}, "
                              f"ends {auction.ends_at:%H:%M:%S} UTC)")
        self.curl_example(base_url, auctions[0].pk)

    def seed(self, admin_password: str) -> list[Auction]:
        """Users first (each gets its account and signup bonus from core.signals), then auctions
        through the same service the API uses, so they start, end and settle like any other."""
        User.objects.create_superuser(username=ADMIN, email="", password=admin_password)
        for name in (*BIDDERS, SELLER):
            User.objects.create_user(username=name, password=DEMO_PASSWORD)
        now = clock.now()
        minutes = lambda n: now + timedelta(minutes=n)  # noqa: E731
        return [
            services.auction_create(
                title="Vintage mechanical watch", description="Swiss, 1960s, keeps good time.",
                starts_at=now, ends_at=minutes(3), starting_price=50, min_increment=5, seller=SELLER, now=now,
            ),
            services.auction_create(
                title="Signed first edition", description="Opens a minute after the demo starts.",
                starts_at=minutes(1), ends_at=minutes(6), starting_price=20, min_increment=2, seller=SELLER,
                now=now,
            ),
            services.auction_create(
                title="Mid-century armchair", description="Has a reserve, and a buy-now price.",
                starts_at=now, ends_at=minutes(10), starting_price=100, min_increment=10,
                reserve_price=400, buy_now_price=900, now=now,
            ),
        ]

    def logins(self) -> None:
        self.stdout.write(f"  Bidders:  {', '.join(BIDDERS)}  password {DEMO_PASSWORD}  "
                          f"({settings.SIGNUP_BONUS} coins each)")
        self.stdout.write(f"  Seller:   {SELLER}  password {DEMO_PASSWORD}")

    def already_seeded(self, base_url: str) -> None:
        self.stdout.write("database already seeded")
        present = set(User.objects.filter(username__in=(ADMIN, *BIDDERS, SELLER)).values_list("username", flat=True))
        if ADMIN in present:
            self.stdout.write(f"  Admin:    {base_url}/admin/  user {ADMIN}  (password printed when it was seeded; "
                              f"reset it with `manage.py changepassword {ADMIN}`)")
        if present & {*BIDDERS, SELLER}:
            self.stdout.write(f"  Demo users: {', '.join(sorted(present - {ADMIN}))}  "
                              f"(password {DEMO_PASSWORD} unless changed)")
        live = Auction.objects.filter(status=Auction.Status.LIVE).order_by("ends_at").first()
        self.curl_example(base_url, live.pk if live else None)

    def curl_example(self, base_url: str, auction_id: int | None) -> None:
        target = auction_id if auction_id is not None else "{id}"
        self.stdout.write("  Get a token and bid:")
        self.stdout.write(
            f"    TOKEN=$(curl -s -X POST {base_url}/api/auth/token -H 'Content-Type: application/json' "
            f"-d '{{\"username\": \"alice\", \"password\": \"{DEMO_PASSWORD}\"}}' "
            "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access\"])')"
        )
        self.stdout.write(
            f"    curl -s -X POST {base_url}/api/auctions/{target}/bids -H \"Authorization: Bearer $TOKEN\" "
            "-H 'Content-Type: application/json' -d '{\"amount\": 60}'"
        )

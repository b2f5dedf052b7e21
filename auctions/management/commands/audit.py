"""`manage.py audit`: check the platform's invariants over the tables (auctions.audit) and exit 1
if any is broken. Read-only; safe to run on a live system (bids in flight are allowed with
--allow-queued, which a busy platform needs)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from auctions import audit


class Command(BaseCommand):
    help = "Audit every auction and the ledger: decisions, streams, prices, coins, holds, settlements, ends."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--auction", type=int, action="append", dest="auctions",
                            help="audit only this auction (repeatable); the ledger is always audited whole")
        parser.add_argument("--allow-queued", action="store_true",
                            help="bids still queued are in flight, not lost (a platform taking bids)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options) -> None:
        report = audit.audit(auction_ids=options["auctions"], allow_queued=options["allow_queued"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(f"audit of {report.auctions} auction(s) and the ledger at {report.at.isoformat()}")
            for line in report.lines():
                self.stdout.write(line)
        if not report.ok:
            raise CommandError(f"{len(report.failed())} invariant(s) broken: "
                               + ", ".join(c.name for c in report.failed()))

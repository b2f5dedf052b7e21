"""The platform's invariants, checked by reading the tables as an auditor would (ARCHITECTURE.md
P1-P6). One module for the test suite, the benchmarks' after-run checks, the fault suite and
operators (`manage.py audit`).

Each check reads in bulk (a query per table, not per auction), so auditing ten thousand
auctions costs a few queries; it returns counts and a few examples rather than raising, so a
report can show every broken property at once.

What it checks:
- decided: no bid is left `queued` (unless the caller allows bids still in flight), and every
  bid was decided exactly once: an accepted bid has exactly one own `bid.accepted` event, whose
  seq the bid records; a rejected one has none; bid_count counts the `bid.accepted` events.
- streams: each auction's events are seq 1..N with no gap or duplicate, N = Auction.seq.
- prices: within an auction, each decision's `bid.accepted` shows a strictly higher price.
- ledger: the balances sum to zero, no account's available balance is negative, `held` is
  the sum of the account's active holds, every balance is what its transfers add up to.
- holds: a live auction's active holds are exactly its leader's maximum; a final one has none.
- settlements: an ended auction with a winner has exactly one settlement transfer, of its final
  price, from the winner to the seller (or the house); any other auction has none.
- ends: an ended auction has one `auction.ended` event, not before its end; a cancelled one one
  `auction.cancelled`; no live auction is more than `overdue_after` past its end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min

from auctions.models import Auction, AuctionEvent, Bid, Participant
from core import clock, ledger
from core.models import Account, Hold, Transfer

EXAMPLES = 10
# The contract ends an auction within 1 s of its end; a beat that was down catches up within
# a tick or two. Past this, a live auction's end has been missed.
OVERDUE_AFTER = timedelta(seconds=5)


@dataclass
class Check:
    name: str
    what: str
    checked: int = 0  # how many things (bids, auctions, accounts) were looked at
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    def summary(self) -> str:
        if self.ok:
            return f"{self.checked} checked"
        shown = "; ".join(self.problems[:EXAMPLES])
        more = f" (+{len(self.problems) - EXAMPLES} more)" if len(self.problems) > EXAMPLES else ""
        return f"{len(self.problems)} problem(s) in {self.checked} checked: {shown}{more}"


@dataclass
class Report:
    checks: list[Check]
    auctions: int
    at: datetime

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "auctions": self.auctions, "at": self.at.isoformat(),
                "checks": [{**asdict(c), "ok": c.ok, "problems": c.problems[:EXAMPLES],
                            "problem_count": len(c.problems)} for c in self.checks]}

    def lines(self) -> list[str]:
        return [f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.what} -- {c.summary()}" for c in self.checks]


def audit(*, auction_ids: Iterable[int] | None = None, allow_queued: bool = False,
          overdue_after: timedelta = OVERDUE_AFTER, now: datetime | None = None) -> Report:
    """Audit the given auctions (all of them by default) and the whole ledger."""
    now = now or clock.now()
    auctions_qs = Auction.objects.all() if auction_ids is None else Auction.objects.filter(pk__in=list(auction_ids))
    auctions = {a["pk"]: a for a in auctions_qs.values(
        "pk", "status", "seq", "bid_count", "ends_at", "ended_at", "leader_id", "winner_id", "final_price",
        "seller_id", "buy_now_price")}
    # Every auction: no IN list (tens of thousands of ids would be a query of its own).
    ids = None if auction_ids is None else list(auctions)
    events = _events(ids)
    checks = [
        _check_decided(auctions, ids, events, allow_queued=allow_queued),
        _check_streams(auctions, ids),
        _check_prices(events),
        _check_ledger(),
        _check_holds(auctions, ids),
        _check_settlements(auctions, ids),
        _check_ends(auctions, events, now=now, overdue_after=overdue_after),
    ]
    return Report(checks=checks, auctions=len(auctions), at=now)


def _of(model, ids: list[int] | None):
    """`model`'s rows of the audited auctions."""
    return model.objects.all() if ids is None else model.objects.filter(auction_id__in=ids)


def _events(ids: list[int] | None) -> dict[int, list[tuple[int, str, dict, datetime]]]:
    """The events an audit looks into (not the whole stream): (seq, type, data, at) by auction."""
    out: dict[int, list] = defaultdict(list)
    rows = (_of(AuctionEvent, ids).filter(type__in=["bid.accepted", "auction.ended",
                                                                        "auction.cancelled"])
            .order_by("auction_id", "seq").values_list("auction_id", "seq", "type", "data", "at"))
    for auction_id, seq, type_, data, at in rows.iterator(chunk_size=5000):
        out[auction_id].append((seq, type_, data, at))
    return out


def _check_decided(auctions: dict, ids: list[int] | None, events: dict, *, allow_queued: bool) -> Check:
    check = Check("decided", "every bid decided exactly once")
    own: dict[int, list[int]] = defaultdict(list)
    accepted_events: dict[int, int] = defaultdict(int)
    for auction_id, rows in events.items():
        for seq, type_, data, _at in rows:
            if type_ == "bid.accepted":
                accepted_events[auction_id] += 1
                if not data.get("proxy"):
                    own[data.get("bid_id")].append(seq)
    bids = _of(Bid, ids).values_list("pk", "auction_id", "status", "seq")
    for pk, auction_id, status, seq in bids.iterator(chunk_size=5000):
        check.checked += 1
        if status == Bid.Status.QUEUED:
            if not allow_queued:
                check.fail(f"bid {pk} (auction {auction_id}) still queued")
            if pk in own:
                check.fail(f"bid {pk} is queued but has a bid.accepted event")
        elif status == Bid.Status.REJECTED:
            if pk in own or seq is not None:
                check.fail(f"rejected bid {pk} has an accepted event or a seq")
        elif own.get(pk, []) != ([] if seq is None else [seq]):
            # seq None: a leader's silent max raise, accepted but not on the public stream
            check.fail(f"accepted bid {pk} (seq {seq}) has own bid.accepted events at {own.get(pk, [])}")
    for auction_id, a in auctions.items():
        if a["bid_count"] != accepted_events.get(auction_id, 0):
            check.fail(f"auction {auction_id} bid_count {a['bid_count']} != "
                       f"{accepted_events.get(auction_id, 0)} bid.accepted events")
    return check


def _check_streams(auctions: dict, ids: list[int] | None) -> Check:
    check = Check("streams", "event seqs 1..N per auction, no gap, no duplicate, N = Auction.seq")
    spans = {row["auction_id"]: row for row in _of(AuctionEvent, ids).values("auction_id").annotate(
        n=Count("id"), lo=Min("seq"), hi=Max("seq"), distinct=Count("seq", distinct=True))}
    for auction_id, a in auctions.items():
        check.checked += 1
        span = spans.get(auction_id, {"n": 0, "lo": None, "hi": None, "distinct": 0})
        if span["n"] == 0:
            if a["seq"] != 0:
                check.fail(f"auction {auction_id}: seq {a['seq']} but no events")
        elif not (span["lo"] == 1 and span["hi"] == span["n"] == span["distinct"] == a["seq"]):
            check.fail(f"auction {auction_id}: {span['n']} events, seqs {span['lo']}..{span['hi']} "
                       f"({span['distinct']} distinct), Auction.seq {a['seq']}")
    return check


def _check_prices(events: dict) -> Check:
    """A decision shows the bid and, when the leader's proxy answers it, the proxy's bid, both
    with the price after the decision: so the price rises strictly from one decision to the
    next, and a proxy event may repeat only the price of the bid it answers."""
    check = Check("prices", "each accepted bid raises the current price")
    for auction_id, rows in events.items():
        last, last_proxy = None, True
        for seq, type_, data, _at in rows:
            if type_ != "bid.accepted":
                continue
            check.checked += 1
            price, proxy = data.get("current_price"), bool(data.get("proxy"))
            answers = proxy and not last_proxy and price == last
            if last is not None and (price is None or (price <= last and not answers)):
                check.fail(f"auction {auction_id} seq {seq}: price {price} after {last}")
            last, last_proxy = price, proxy
    return check


def _check_ledger() -> Check:
    check = Check("ledger", "sum 0; no negative available; held = active holds; balance = transfers")
    total = ledger.ledger_sum()
    if total != 0:
        check.fail(f"balances sum to {total}")
    for a in ledger.accounts_audit():
        check.checked += 1
        if a.kind != Account.Kind.MINT and a.balance - a.held < 0:
            check.fail(f"account {a.pk}: available {a.balance - a.held} < 0")
        if a.held != a.active_holds:
            check.fail(f"account {a.pk}: held {a.held} != active holds {a.active_holds}")
        if a.balance != a.credited - a.debited:
            check.fail(f"account {a.pk}: balance {a.balance} != transfers {a.credited - a.debited}")
    return check


def _check_holds(auctions: dict, ids: list[int] | None) -> Check:
    check = Check("holds", "a live auction holds its leader's max, a final one nothing")
    holds: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for auction_id, user_id, amount in _of(Hold, ids).filter(active=True).values_list(
            "auction_id", "account__user_id", "amount"):
        holds[auction_id].append((user_id, amount))
    leaders = {(a_id, a["leader_id"]) for a_id, a in auctions.items() if a["leader_id"] is not None}
    maxima = {(a_id, user_id): m
              for a_id, user_id, m in _of(Participant, ids).values_list("auction_id", "user_id", "max_amount")
              if (a_id, user_id) in leaders}
    final = {Auction.Status.ENDED, Auction.Status.CANCELLED}
    for auction_id, a in auctions.items():
        check.checked += 1
        if a["status"] in final or a["leader_id"] is None:
            expected = []
        else:
            expected = [(a["leader_id"], maxima.get((auction_id, a["leader_id"])))]
        if sorted(holds.get(auction_id, [])) != expected:
            check.fail(f"auction {auction_id} ({a['status']}): holds {sorted(holds.get(auction_id, []))} "
                       f"!= {expected}")
    return check


def _check_settlements(auctions: dict, ids: list[int] | None) -> Check:
    check = Check("settlements", "each winner paid its final price once, to the seller or the house")
    paid: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for auction_id, debit, credit, amount in _of(Transfer, ids).filter(kind=Transfer.Kind.SETTLEMENT).values_list(
            "auction_id", "debit_id", "credit_id", "amount"):
        paid[auction_id].append((debit, credit, amount))
    users = {a["winner_id"] for a in auctions.values()} | {a["seller_id"] for a in auctions.values()}
    account_of = dict(Account.objects.filter(user_id__in=users - {None}).values_list("user_id", "pk"))
    house = Account.objects.filter(kind=Account.Kind.HOUSE, user=None).values_list("pk", flat=True).first()
    for auction_id, a in auctions.items():
        check.checked += 1
        got = paid.get(auction_id, [])
        if a["status"] == Auction.Status.ENDED and a["winner_id"] is not None:
            credit = account_of.get(a["seller_id"]) if a["seller_id"] is not None else house
            expected = [(account_of.get(a["winner_id"]), credit, a["final_price"])]
            if got != expected:
                check.fail(f"auction {auction_id}: settlements {got} != {expected}")
        elif got:
            check.fail(f"auction {auction_id} ({a['status']}, no winner) has settlements {got}")
    return check


def _bought_now(a: dict) -> bool:
    """A buy-now ends the auction at once, before its end (rule: the first bid at the price)."""
    return a["buy_now_price"] is not None and a["final_price"] == a["buy_now_price"] and a["bid_count"] == 1


def _check_ends(auctions: dict, events: dict, *, now: datetime, overdue_after: timedelta) -> Check:
    check = Check("ends", "each due auction ended once, not early; cancelled once")
    for auction_id, a in auctions.items():
        check.checked += 1
        rows = events.get(auction_id, [])
        ended = [at for _seq, type_, _data, at in rows if type_ == "auction.ended"]
        cancelled = [at for _seq, type_, _data, at in rows if type_ == "auction.cancelled"]
        status = a["status"]
        if status == Auction.Status.ENDED:
            if len(ended) != 1:
                check.fail(f"auction {auction_id} ended with {len(ended)} auction.ended events")
            elif ended[0] < a["ends_at"] and not _bought_now(a):
                check.fail(f"auction {auction_id} ended early: at {ended[0].isoformat()} < "
                           f"ends_at {a['ends_at'].isoformat()}")
        elif ended:
            check.fail(f"auction {auction_id} is {status} but has {len(ended)} auction.ended events")
        if status == Auction.Status.CANCELLED and len(cancelled) != 1:
            check.fail(f"auction {auction_id} cancelled with {len(cancelled)} auction.cancelled events")
        elif status != Auction.Status.CANCELLED and cancelled:
            check.fail(f"auction {auction_id} is {status} but has an auction.cancelled event")
        if status == Auction.Status.LIVE and a["ends_at"] < now - overdue_after:
            check.fail(f"auction {auction_id} still live {(now - a['ends_at']).total_seconds():.1f} s "
                       f"after its end")
    return check

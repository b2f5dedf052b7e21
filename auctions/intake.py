"""Receiving a bid: its position and its durable row, in one step.

Positions are gap-free per auction and follow commit order, so handing one out and storing the
bid must happen under one lock on the auction's Intake row, held until commit. That lock is the
one place where all of a hot auction's bids queue up, so how long it is held bounds the auction's
intake rate. On PostgreSQL one autocommit statement locks the row, bumps the position, inserts
the bid and commits: the lock is held inside the server for a few tens of microseconds, never
across a round trip to a Python process that the scheduler may pause. Elsewhere (SQLite, whose
writers are serialised anyway) the same steps run as ORM calls in one transaction.

The fence against ends: an end or cancel locks the Intake row and sets `closed` in the same
transaction that makes the auction final. A statement that waited for that lock re-checks the
row it then gets (PostgreSQL's EvalPlanQual re-evaluates the WHERE on the new row version), sees
`closed` and inserts nothing; the auction's status and end, read in the statement's snapshot,
refuse everything that arrives after a commit that is already visible. A buy-now ends the auction
in the decider, which must not take the Intake lock (lock order Intake -> Auction), so it leaves
`closed` alone: the status check refuses later bids, and one that slipped in before the buy-now
committed is decided afterwards and rejected as the auction is no longer live.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction

from auctions.models import Auction, Bid, Intake
from core import sql


@dataclass(frozen=True)
class Look:
    """What the checks before receiving a bid read about its auction and the bidder."""

    auction: Auction  # id, seller_id and status only
    ended: bool  # its end has come by the time asked about
    earlier_bid_id: int | None  # the bidder's bid with the same client_bid_id


def look(*, auction_id: int, bidder_id: int, client_bid_id: str | None, now: datetime) -> Look | None:
    """One round trip for everything the checks need (None: no such auction)."""
    return look_many([(auction_id, bidder_id, client_bid_id, now)])[0]


def look_many(asked: list[tuple[int, int, str | None, datetime]]) -> list[Look | None]:
    """`look` for several bids ((auction id, bidder id, client_bid_id, now) each) in one round
    trip. Through the ORM this was two compiled queries per bid: a fifth of a web process's time
    in the hot-auction profile."""
    if not asked:
        return []
    adapt = connection.ops.adapt_datetimefield_value
    with sql.cursor() as cursor:
        vendor = connection.vendor
        cursor.execute(
            _look_sql(sql.shape(len(asked), vendor), vendor),
            sql.rows_params([(k, auction_id, bidder_id, client_bid_id, adapt(now))
                             for k, (auction_id, bidder_id, client_bid_id, now) in enumerate(asked)], vendor))
        found = {k: row for k, *row in cursor.fetchall()}
    out: list[Look | None] = []
    # One instance per auction of the batch: a model's __init__ was ~5% of a web process's
    # samples at 900 bids/s on one auction. Its bids share it (read only: seller and status).
    auctions: dict[tuple, Auction] = {}
    for k, (auction_id, *_rest) in enumerate(asked):
        row = found.get(k)
        if row is None:
            out.append(None)
            continue
        seller_id, status, ended, earlier = row
        auction = auctions.get((auction_id, seller_id, status))
        if auction is None:
            auction = auctions[auction_id, seller_id, status] = Auction(pk=auction_id, seller_id=seller_id,
                                                                        status=status)
        out.append(Look(auction, bool(ended), earlier))
    return out


# The statements below depend only on how many rows they carry and on the database: built once
# each, not per bid.
@functools.lru_cache(maxsize=256)
def _look_sql(rows: int, vendor: str) -> str:
    auctions, bids = Auction._meta.db_table, Bid._meta.db_table
    field = Bid._meta.get_field
    types = tuple(sql.db_type(field(f)) for f in ("position", "auction", "bidder", "client_bid_id", "received_at"))
    return (
        f"WITH v(k, auction_id, bidder_id, client_bid_id, at) AS ({sql.rows_source(types, rows, vendor)}) "
        f"SELECT {sql.typed('v.k', field('position'))}, a.seller_id, a.status, "
        f"a.ends_at <= {sql.typed('v.at', field('received_at'))}, "
        f"(SELECT b.id FROM {bids} AS b WHERE b.auction_id = a.id"
        f" AND b.bidder_id = {sql.typed('v.bidder_id', field('bidder'))}"
        f" AND b.client_bid_id = {sql.typed('v.client_bid_id', field('client_bid_id'))}) "
        f"FROM v JOIN {auctions} AS a ON a.id = {sql.typed('v.auction_id', field('auction'))}"
    )


DUPLICATE = "duplicate"  # receive_many's answer for a bid whose client_bid_id the bidder used already


def receive(*, auction_id: int, bidder_id: int, amount: int, max_amount: int | None, client_bid_id: str | None,
            channel: str, received_at: datetime) -> Bid | None:
    """Store the bid with the auction's next position, or return None when the auction is not
    taking bids (not live, closed, or its end has come by `received_at`). Raises IntegrityError
    when the bidder's client_bid_id is taken; nothing is stored then."""
    bid = Bid(auction_id=auction_id, bidder_id=bidder_id, amount=amount, max_amount=max_amount,
              client_bid_id=client_bid_id, channel=channel, received_at=received_at, status=Bid.Status.QUEUED)
    return _receive_one(bid)


def _receive_one(bid: Bid) -> Bid | None:
    if connection.vendor == "postgresql":
        return bid if _one_statement([bid]) else None
    return _locked(bid)


def receive_many(bids: list[Bid]) -> list[Bid | None | str]:
    """`receive` for several unsaved bids (a web process's intake batch), each answered with
    itself, stored with its position; None (the auction takes no bids at its received_at); or
    DUPLICATE. An auction's bids get consecutive positions in list order, and on PostgreSQL one
    statement stores them all; when that statement cannot (a duplicate client_bid_id, or the
    auction's end falls among their received_at), each is received on its own, which says
    which bid fails and why."""
    out: list[Bid | None | str] = [None] * len(bids)
    by_auction: dict[int, list[int]] = {}
    for i, bid in enumerate(bids):
        by_auction.setdefault(bid.auction_id, []).append(i)
    for indexes in by_auction.values():
        group = [bids[i] for i in indexes]
        if connection.vendor == "postgresql" and len(group) > 1:
            try:
                stored = _one_statement(group)
            except IntegrityError:
                stored = False
            if stored:
                for i in indexes:
                    out[i] = bids[i]
                continue
        for i in indexes:
            bid = bids[i]
            try:
                out[i] = _receive_one(bid)
            except IntegrityError:
                out[i] = DUPLICATE
    return out


_COLUMNS = ["auction_id", "bidder_id", "amount", "max_amount", "status", "client_bid_id", "channel", "received_at"]


@functools.lru_cache(maxsize=256)
def _receive_sql(rows: int, vendor: str) -> str:
    intake, bids, auctions = Intake._meta.db_table, Bid._meta.db_table, Auction._meta.db_table
    fields = [Bid._meta.get_field(c) for c in _COLUMNS]
    values = ", ".join(sql.typed(f"v.{c}", f) for c, f in zip(_COLUMNS, fields, strict=True))
    types = (*(sql.db_type(f) for f in fields), sql.db_type(Bid._meta.get_field("position")))
    return f"""
        WITH pos AS (
            UPDATE {intake} AS i SET last_position = i.last_position + %s
            WHERE i.auction_id = %s AND NOT i.closed AND EXISTS (
                SELECT 1 FROM {auctions} AS a WHERE a.id = i.auction_id AND a.status = %s AND a.ends_at > %s)
            RETURNING i.last_position
        ), v({", ".join(_COLUMNS)}, n) AS ({sql.rows_source(types, rows, vendor)})
        INSERT INTO {bids} ({", ".join(_COLUMNS)}, position)
        SELECT {values}, pos.last_position - %s + CAST(v.n AS integer) FROM pos, v
        RETURNING id, position"""


def _one_statement(group: list[Bid]) -> bool:
    """Store `group` (bids of one auction) in one autocommit statement: the Intake row's lock is
    held inside the server only. Sets each bid's pk and position and returns True, or stores
    nothing and returns False when the auction takes no bids as of the group's last received_at."""
    k, vendor = len(group), connection.vendor
    statement = _receive_sql(sql.shape(k, vendor), vendor)
    adapt = connection.ops.adapt_datetimefield_value
    rows = sql.rows_params([(*(getattr(bid, c) for c in _COLUMNS[:-1]), adapt(bid.received_at), n)
                            for n, bid in enumerate(group, start=1)], vendor)
    latest = max(bid.received_at for bid in group)
    params = [k, group[0].auction_id, Auction.Status.LIVE, latest, *rows, k]
    # Inside a caller's transaction a savepoint keeps a duplicate client_bid_id from breaking it;
    # outside one the statement is its own transaction, which is the point.
    scope = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with scope, sql.cursor() as cursor:
        cursor.execute(statement, params)
        stored = dict((position, pk) for pk, position in cursor.fetchall())
    if not stored:
        return False
    first = max(stored) - k
    for n, bid in enumerate(group, start=1):
        bid.position = first + n
        bid.pk = stored[bid.position]
    return True


def _locked(bid: Bid) -> Bid | None:
    with transaction.atomic():
        intake = Intake.objects.select_for_update().get(pk=bid.auction_id)
        # Read under the Intake lock: an end or cancel that committed before we got it is seen.
        auction = Auction.objects.only("id", "status", "ends_at").get(pk=bid.auction_id)
        if intake.closed or auction.status != Auction.Status.LIVE or bid.received_at >= auction.ends_at:
            return None
        intake.last_position += 1
        Intake.objects.filter(pk=bid.auction_id).update(last_position=intake.last_position)
        bid.position = intake.last_position
        bid.save(force_insert=True)
    return bid


def lock(auction_id: int) -> bool:
    """Lock the auction's Intake row (an end's or cancel's first step, before the Auction row);
    False if there is no such auction."""
    with sql.cursor() as cursor:
        cursor.execute(_lock_sql(connection.vendor), [auction_id])
        return cursor.fetchone() is not None


@functools.lru_cache(maxsize=4)
def _lock_sql(vendor: str) -> str:
    lock = " FOR UPDATE" if vendor == "postgresql" else ""
    return f"SELECT 1 FROM {Intake._meta.db_table} WHERE auction_id = %s{lock}"


def close(auction_id: int, writes: sql.Writes | None = None) -> None:
    """Take no more bids: called by an end or cancel, holding the Intake lock, in the transaction
    that makes the auction final; queued on `writes` when given (the caller flushes it), else run now."""
    queued = writes if writes is not None else sql.Writes()
    queued.add(*sql.update(Intake, ("closed",), ("pk",), [(True, auction_id)]))
    if writes is None:
        queued.flush()

"""Auction services: the transactions that apply the rules.

Locks, always taken in this order: Intake (bid receipt) -> Auction (state) -> Account rows (coins,
via core.ledger, ascending id). `bid_submit` takes only Intake; the decider takes only Auction (then
accounts); end and cancel take Intake then Auction, which fences them against bids in flight.
Every function that changes state emits AuctionEvents through an Outbox and publishes after commit.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from auctions import intake, rules, selectors
from auctions.models import Auction, AuctionEvent, Bid, Intake, Participant
from core import clock, counters, ledger, ratelimit, sql
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from core.models import Account, Hold, User
from core.timefmt import iso
from realtime import publish
from tasks import doorbell

log = logging.getLogger(__name__)

MAX_AMOUNT = 10**12


# --- the outbox: events and notifications, published only after commit -----------------------


@dataclass
class Outbox:
    auction: Auction
    events: list[AuctionEvent] = field(default_factory=list)
    user_frames: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lobby: bool = False
    names: dict[int, str] | None = None  # usernames of everyone the auction shows, when known
    # For the metrics and the log, also told only after commit: a rolled-back batch decided nothing.
    decided: list[Bid] = field(default_factory=list)
    finished: str | None = None  # sold | unsold | cancelled

    def emit(self, type_: str, data: dict[str, Any], *, at: datetime) -> AuctionEvent:
        self.auction.seq += 1
        event = AuctionEvent(auction_id=self.auction.pk, seq=self.auction.seq, type=type_, data=data, at=at)
        self.events.append(event)
        return event

    def to_user(self, user_id: int, frame: dict[str, Any]) -> None:
        self.user_frames.append((user_id, frame))

    def save_events(self, writes: sql.Writes | None = None) -> None:
        """Insert the events: queued on `writes`, which the caller flushes, or at once."""
        if not self.events:
            return
        data, at = (AuctionEvent._meta.get_field(f).get_db_prep_save for f in ("data", "at"))
        now = writes or sql.Writes()
        now.add(*sql.insert(AuctionEvent, ("auction", "seq", "type", "data", "at"),
                            [(e.auction_id, e.seq, e.type, data(e.data, connection), at(e.at, connection))
                             for e in self.events]))
        if writes is None:
            now.flush()

    def publish_on_commit(self) -> None:
        events = [selectors.event_data(e) for e in self.events]
        frames = list(self.user_frames)
        auction_id = self.auction.pk
        lobby = self.lobby or bool(events)
        # The lobby's summary of what this transaction commits, built now from the row in hand
        # when the names it shows are known (the decider's batches): re-reading the auction with
        # its relations after every batch cost the bid worker a fifth of a one-bid batch.
        summary = None
        if lobby and self.names is not None:
            summary = selectors.auction_data(self.auction, names=self.names)

        def _publish() -> None:
            if events:
                publish.publish_events(auction_id, events)
            for user_id, frame in frames:
                publish.publish_to_user(user_id, frame)
            if summary is not None:
                publish.publish_lobby(summary)
            elif lobby:
                auction = selectors.auction_get(auction_id)
                if auction is not None:
                    publish.publish_lobby(selectors.auction_data(auction))

        transaction.on_commit(_publish)
        decided, finished = list(self.decided), self.finished
        if decided or finished:
            transaction.on_commit(lambda: _report(auction_id, decided, finished))


def _report(auction_id: int, decided: list[Bid], finished: str | None) -> None:
    """After commit: count the decisions (core.counters) and log them with their ids."""
    if decided:
        counters.bids_decided(decided)
        accepted = sum(1 for b in decided if b.status == Bid.Status.ACCEPTED)
        log.info("auction %s: decided %d bid(s), positions %s-%s, %d accepted", auction_id, len(decided),
                 decided[0].position, decided[-1].position, accepted,
                 extra={"auction_id": auction_id, "bid_count": len(decided), "accepted": accepted,
                        "first_bid_id": decided[0].pk, "last_bid_id": decided[-1].pk})
        if log.isEnabledFor(logging.DEBUG):
            for bid in decided:
                log.debug("bid %s %s%s", bid.pk, bid.status, f" ({bid.reason})" if bid.reason else "",
                          extra={"auction_id": auction_id, "bid_id": bid.pk, "position": bid.position,
                                 "bidder_id": bid.bidder_id, "status": bid.status, "reason": bid.reason})
    if finished:
        counters.auction_finished(outcome=finished)
        log.info("auction %s %s", auction_id, "cancelled" if finished == "cancelled" else f"ended ({finished})",
                 extra={"auction_id": auction_id, "outcome": finished})


# --- creating and scheduling ---------------------------------------------------------------


def _positive(name: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AMOUNT:
        raise InvalidInput(f"{name} must be a whole number of coins from 1 to {MAX_AMOUNT}",
                           code="invalid_field", details={"field": name})
    return value


def auction_create(
    *,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    starting_price: int,
    description: str = "",
    min_increment: int = 1,
    reserve_price: int | None = None,
    buy_now_price: int | None = None,
    extend_window_s: int = 30,
    extend_by_s: int = 30,
    seller: str | None = None,
    now: datetime | None = None,
) -> Auction:
    """Create an auction; one whose start is already due starts in the same transaction."""
    now = now or clock.now()
    title = (title or "").strip()
    if not title or len(title) > 200:
        raise InvalidInput(
            "title is required (at most 200 characters)", code="invalid_field", details={"field": "title"}
        )
    _positive("starting_price", starting_price)
    _positive("min_increment", min_increment)
    _positive("reserve_price", reserve_price, optional=True)
    _positive("buy_now_price", buy_now_price, optional=True)
    for name, value in (("extend_window_s", extend_window_s), ("extend_by_s", extend_by_s)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 86400:
            raise InvalidInput(f"{name} must be a whole number of seconds from 0 to 86400",
                               code="invalid_field", details={"field": name})
    if ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at", code="invalid_field", details={"field": "ends_at"})
    if ends_at <= now:
        raise InvalidInput("ends_at must be in the future", code="invalid_field", details={"field": "ends_at"})
    if buy_now_price is not None and buy_now_price < starting_price:
        raise InvalidInput("buy_now_price must not be below starting_price", code="invalid_field",
                           details={"field": "buy_now_price"})
    if buy_now_price is not None and reserve_price is not None and buy_now_price < reserve_price:
        raise InvalidInput("buy_now_price must not be below reserve_price", code="invalid_field",
                           details={"field": "buy_now_price"})
    seller_user = None
    if seller is not None:
        seller_user = User.objects.filter(username=seller).first()
        if seller_user is None:
            raise InvalidInput(f"unknown seller {seller!r}", code="invalid_field", details={"field": "seller"})

    with transaction.atomic():
        auction = Auction.objects.create(
            title=title,
            description=description or "",
            seller=seller_user,
            starts_at=starts_at,
            ends_at=ends_at,
            hard_close_at=ends_at + timedelta(seconds=settings.MAX_EXTENSION),
            starting_price=starting_price,
            min_increment=min_increment,
            reserve_price=reserve_price,
            buy_now_price=buy_now_price,
            extend_window_s=extend_window_s,
            extend_by_s=extend_by_s,
        )
        Intake.objects.create(auction=auction)
        outbox = Outbox(auction, lobby=True)
        if starts_at <= now:
            _start_locked(auction, outbox, now=now)
        outbox.save_events()
        outbox.publish_on_commit()
        transaction.on_commit(lambda: doorbell.auction_opened(auction.pk))
    return auction


def _start_locked(auction: Auction, outbox: Outbox, *, now: datetime) -> None:
    auction.status = Auction.Status.LIVE
    auction.started_at = now
    outbox.emit("auction.started", {"ends_at": iso(auction.ends_at)}, at=now)
    auction.save(update_fields=["status", "started_at", "seq"])


def auction_start(*, auction_id: int, now: datetime | None = None) -> bool:
    """Start a scheduled auction whose start is due. Idempotent: False if there was nothing to do."""
    now = now or clock.now()
    with transaction.atomic():
        auction = Auction.objects.select_for_update(no_key=True).filter(pk=auction_id).first()
        if auction is None or auction.status != Auction.Status.SCHEDULED or auction.starts_at > now:
            return False
        outbox = Outbox(auction)
        _start_locked(auction, outbox, now=now)
        outbox.save_events()
        outbox.publish_on_commit()
    return True


# --- receiving bids ------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    bid: Bid
    created: bool  # False: a client_bid_id seen before; `bid` is the original


def _validate_amounts(amount: Any, max_amount: Any) -> None:
    for name, value in (("amount", amount), ("max_amount", max_amount)):
        if value is None and name == "max_amount":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AMOUNT:
            raise InvalidInput(f"{name} must be a whole number of coins from 1 to {MAX_AMOUNT}",
                               code="invalid_amount", details={"field": name})
    if max_amount is not None and max_amount < amount:
        raise InvalidInput("max_amount must not be below amount", code="invalid_amount",
                           details={"field": "max_amount"})


@dataclass(frozen=True)
class Submission:
    """A bid as it arrived, before any check (bids_submit_many)."""

    auction_id: int
    user: User
    amount: Any
    max_amount: Any = None
    client_bid_id: Any = None
    channel: str = "rest"
    received_at: datetime | None = None  # now, by default
    rate_limited: bool = False  # take a token from the user's bucket (core.ratelimit) once checked


def bid_submit(
    *,
    auction_id: int,
    user: User,
    amount: Any,
    max_amount: Any = None,
    client_bid_id: str | None = None,
    channel: str = "rest",
    now: datetime | None = None,
    rate_limited: bool = False,
) -> Submitted:
    """Receive a bid: checks in the contract's order, then persist it with the next position and
    ring the auction's queue after commit. Stores nothing when a check fails (raises the
    contract's error)."""
    answer = bids_submit_many([Submission(auction_id, user, amount, max_amount, client_bid_id, channel, now,
                                          rate_limited)])[0]
    if isinstance(answer, ServiceError):
        raise answer
    return answer


def bids_submit_many(submissions: list[Submission]) -> list[Submitted | ServiceError]:
    """Receive several bids at once (a web process's intake batch, auctions/intake_batch.py), each
    answered on its own exactly as bid_submit would: Submitted, or the contract's error for it,
    nothing stored. The costs are per batch: one round trip reads what every check needs, one
    Redis pipeline takes the rate-limit tokens, one statement per auction stores its bids (in
    list order), one doorbell per auction. Other errors (the database or Redis down) raise, and
    then nothing of the batch was acknowledged."""
    answers: list[Submitted | ServiceError | None] = [None] * len(submissions)
    at = [s.received_at or clock.now() for s in submissions]
    well_formed = [_client_bid_id_ok(s.client_bid_id) for s in submissions]
    looks = intake.look_many([(s.auction_id, s.user.pk, s.client_bid_id if ok else None, t)
                              for s, ok, t in zip(submissions, well_formed, at, strict=True)])
    limited = []
    for i, (s, seen) in enumerate(zip(submissions, looks, strict=True)):
        try:
            if _checked(s, seen, well_formed[i]):
                answers[i] = Submitted(_existing(s.auction_id, s.user, s.client_bid_id), created=False)
            elif s.rate_limited:
                limited.append(i)
        except ServiceError as exc:
            answers[i] = exc
    for i, refusal in zip(limited, ratelimit.bid_rate_take([submissions[i].user.pk for i in limited]),
                          strict=True):
        answers[i] = refusal
    todo = [i for i, answer in enumerate(answers) if answer is None]
    stored = intake.receive_many([
        Bid(auction_id=submissions[i].auction_id, bidder_id=submissions[i].user.pk, amount=submissions[i].amount,
            max_amount=submissions[i].max_amount, client_bid_id=submissions[i].client_bid_id,
            channel=submissions[i].channel, received_at=at[i], status=Bid.Status.QUEUED)
        for i in todo])
    rung: set[int] = set()
    received: list[Bid] = []
    for i, bid in zip(todo, stored, strict=True):
        s = submissions[i]
        if bid is intake.DUPLICATE:
            # The same client_bid_id raced in twice: the other one won; answer with it.
            answers[i] = Submitted(_existing(s.auction_id, s.user, s.client_bid_id), created=False)
        elif bid is None:
            answers[i] = _closed_refusal(s.auction_id, at[i])
        else:
            bid.auction, bid.bidder = looks[i].auction, s.user
            answers[i] = Submitted(bid, created=True)
            received.append(bid)
            rung.add(s.auction_id)
    if received:
        # Counted before the ring, so the ring and the callers' answers stay as close as they were.
        transaction.on_commit(lambda: _received(received))
    if rung:
        transaction.on_commit(lambda: doorbell.ring_many(sorted(rung)))
    refused = Counter(answer.code for answer in answers if isinstance(answer, ServiceError))
    counters.bids_refused(refused)
    if refused and log.isEnabledFor(logging.DEBUG):
        for s, answer in zip(submissions, answers, strict=True):
            if isinstance(answer, ServiceError):
                log.debug("bid refused on auction %s: %s", s.auction_id, answer.code,
                          extra={"auction_id": s.auction_id, "user_id": s.user.pk, "reason": answer.code,
                                 "channel": s.channel})
    return answers  # type: ignore[return-value]  # every slot is filled by now


def _received(bids: list[Bid]) -> None:
    """After commit: one metrics write for the batch's stored bids, and a log line each."""
    counters.bids_received(Counter(bid.channel for bid in bids))
    if log.isEnabledFor(logging.DEBUG):
        for bid in bids:
            log.debug("bid %s received on auction %s at position %s", bid.pk, bid.auction_id, bid.position,
                      extra={"auction_id": bid.auction_id, "bid_id": bid.pk, "position": bid.position,
                             "user_id": bid.bidder_id, "channel": bid.channel})


def _checked(s: Submission, seen: intake.Look | None, well_formed: bool) -> bool:
    """The contract's checks but the rate limit, in its order, raising its error. True: the
    bidder used this client_bid_id before (answer with that bid; nothing new is stored)."""
    if seen is None:
        raise NotFound("auction not found")
    _validate_amounts(s.amount, s.max_amount)
    if s.client_bid_id is not None and not well_formed:
        raise InvalidInput("client_bid_id must be a string of 1 to 64 characters (no NUL, valid Unicode)",
                           code="invalid_field", details={"field": "client_bid_id"})
    if seen.earlier_bid_id is not None:
        return True
    if seen.auction.seller_id == s.user.pk:
        raise Forbidden("a seller cannot bid on their own auction", code="seller_cannot_bid")
    _check_open(seen.auction.status, ended=seen.ended)
    return False


def bid_check(*, auction_id: int, user: User, amount: Any, max_amount: Any, client_bid_id: Any, now: datetime,
              rate_check: Any = None) -> tuple[Auction, Bid | None]:
    """The contract's checks on one bid, in its order, before anything is stored (raising the
    contract's error); `rate_check`, if given, is called last and raises RateLimited. Returns the
    auction as checked (id, seller and status only) and the bidder's earlier bid with this
    client_bid_id, if there is one: nothing new is stored then. (The baselines' intake.)"""
    well_formed = _client_bid_id_ok(client_bid_id)
    seen = intake.look(auction_id=auction_id, bidder_id=user.pk, client_bid_id=client_bid_id if well_formed else None,
                       now=now)
    submission = Submission(auction_id, user, amount, max_amount, client_bid_id)
    if _checked(submission, seen, well_formed):
        return seen.auction, _existing(auction_id, user, client_bid_id)
    if rate_check is not None:
        rate_check()
    return seen.auction, None


def _client_bid_id_ok(value: Any) -> bool:
    """A client_bid_id the database can store and compare: 1..64 characters, no NUL (PostgreSQL
    refuses it in text) and no lone surrogate (JSON's "\\ud800" decodes to one, and neither
    database driver can encode it). REST and WebSocket bids both come through here."""
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _closed_refusal(auction_id: int, now: datetime) -> Conflict:
    """The 409 for a bid the intake refused after its checks passed: the auction was ended or
    cancelled in between; say which, as the checks would have."""
    again = intake.look(auction_id=auction_id, bidder_id=0, client_bid_id=None, now=now)
    if again is not None:
        try:
            _check_open(again.auction.status, ended=again.ended)
        except Conflict as refusal:
            return refusal
    return Conflict("the auction has ended", code="auction_ended")


def _existing(auction_id: int, user: User, client_bid_id: str) -> Bid | None:
    return (
        Bid.objects.select_related("auction", "bidder")
        .filter(auction_id=auction_id, bidder=user, client_bid_id=client_bid_id)
        .first()
    )


def _check_open(status: str, *, ended: bool) -> None:
    if status in (Auction.Status.SCHEDULED, Auction.Status.CANCELLED):
        raise Conflict(f"the auction is {status}", code="auction_not_live")
    if status == Auction.Status.ENDED or ended:
        raise Conflict("the auction has ended", code="auction_ended")


# --- deciding bids -------------------------------------------------------------------------


class _Book:
    """The auction's rules.State plus what is needed to write it back.

    Deciding a batch reads the standings of the batch's bidders and of the two highest maxima
    only (`bidders`), not of everyone who ever bid: rules.decide_bid ranks the standings to find
    the leader and the runner-up, and a standing outside the batch never changes, so one ranked
    third or lower before the batch cannot rank higher during it. Reading every standing made a
    batch cost O(participants): 5 ms of bid worker CPU for one bid on a 200-bidder auction."""

    def __init__(self, auction: Auction, bidders: set[int] | None = None, rows: list[tuple] | None = None):
        """`rows`: those standings (rules.Standing's fields) when the caller read them already."""
        self.auction = auction
        self.terms = selectors.terms_of(auction)
        self.partial = bidders is not None
        if rows is None:
            with sql.cursor() as cursor:
                if bidders is not None:
                    cursor.execute(_standings_sql(len(bidders), connection.vendor),
                                   [*bidders, auction.pk, auction.pk])
                else:
                    cursor.execute(_standings_sql(None, connection.vendor), [auction.pk])
                rows = cursor.fetchall()
        self.stored = {row[0] for row in rows}  # whose Participant row exists
        self.unread: list[int] | None = None  # everyone()'s other participants, read once
        self.state = rules.State(
            status=auction.status,
            ends_at=auction.ends_at,
            current_price=auction.current_price,
            leader_id=auction.leader_id,
            bid_count=auction.bid_count,
            standings={row[0]: rules.Standing(*row) for row in rows},
        )
        self.changed: set[int] = set()

    def everyone(self) -> list[int]:
        """Every participant's user id, those of this batch included (a settlement tells each)."""
        known = list(self.state.standings)
        if not self.partial:
            return known
        if self.unread is None:  # the rows not read for the batch; they do not change during it
            self.unread = list(Participant.objects.filter(auction_id=self.auction.pk)
                               .exclude(user_id__in=self.stored).values_list("user_id", flat=True))
        seen = set(known)
        return known + [user_id for user_id in self.unread if user_id not in seen]

    def save(self, writes: sql.Writes) -> None:
        """Queue the changed standings and the auction row: at most one INSERT and two UPDATEs."""
        new = [self.state.standings[u] for u in self.changed if u not in self.stored]
        old = [self.state.standings[u] for u in self.changed if u in self.stored]
        if new:
            writes.add(*sql.insert(Participant, ("auction", "user", *_STANDING_FIELDS),
                                   [(self.auction.pk, s.user_id, *_standing_values(s)) for s in new]))
            self.stored.update(s.user_id for s in new)
        if old:
            writes.add(*sql.update(Participant, _STANDING_FIELDS, ("user",),
                                   [(*_standing_values(s), s.user_id) for s in old], _OF_AUCTION, (self.auction.pk,)))
        self.changed.clear()
        a, st = self.auction, self.state
        a.current_price, a.leader_id, a.bid_count = st.current_price, st.leader_id, st.bid_count
        adapt = connection.ops.adapt_datetimefield_value
        writes.add(*sql.update(Auction, _AUCTION_FIELDS, ("pk",), [(
            a.current_price, a.leader_id, a.bid_count, a.seq, adapt(a.ends_at), a.end_version, a.status, a.winner_id,
            a.final_price, adapt(a.ended_at), a.pk)]))


_STANDING_FIELDS = ("max_amount", "max_bid", "max_position", "own_amount", "shown_amount")
# What a batch reads of each standing: rules.Standing's fields, in order.
_STANDING_COLUMNS = ("user_id", "max_amount", "max_bid_id", "max_position", "own_amount", "shown_amount")
_OF_AUCTION = f'"{Participant._meta.db_table}"."auction_id" = %s'
_AUCTION_FIELDS = ("current_price", "leader", "bid_count", "seq", "ends_at", "end_version", "status", "winner",
                   "final_price", "ended_at")


def _standing_values(s: rules.Standing) -> tuple:
    return s.max_amount, s.max_bid_id, s.max_position, s.own_amount, s.shown_amount


@functools.lru_cache(maxsize=256)
def _standings_sql(bidders: int | None, vendor: str) -> str:
    """The standings a batch reads (rules.Standing's fields, in order): those of `bidders`
    users (params: their ids, the auction id twice) and of the two highest maxima;
    with `bidders` None every standing of the auction (params: auction id)."""
    table = Participant._meta.db_table
    columns = ", ".join(_STANDING_COLUMNS)
    if bidders is None:
        return f"SELECT {columns} FROM {table} WHERE auction_id = %s"
    return (f"SELECT {columns} FROM {table} WHERE user_id IN {sql.in_list(bidders)} AND auction_id = %s "
            f"UNION SELECT * FROM (SELECT {columns} FROM {table} WHERE auction_id = %s "
            f"ORDER BY max_amount DESC, max_position LIMIT 2) AS top")


def bids_decide_pending(*, auction_id: int, now: datetime | None = None) -> int:
    """Decide every bid of the auction still queued, in position order, in batches of
    BID_BATCH_SIZE, one transaction each, under the auction's row lock.

    The lock is FOR NO KEY UPDATE: it excludes other deciders, ends and cancels, but not the
    intake's bid INSERTs, whose foreign-key check only takes FOR KEY SHARE on the auction row;
    a plain FOR UPDATE would make every bid received during a batch wait for that batch's commit.

    A batch is five round trips on PostgreSQL: BEGIN, the lock, one statement that reads the
    queued bids, the standings and the locked accounts (`_BatchRead`), every write in one
    statement (core.sql.Writes), COMMIT. The reads follow the lock in a statement of their own
    so that they see what the decider before committed (READ COMMITTED takes a snapshot per
    statement); elsewhere each read is a statement of its own.

    Idempotent: a duplicate, late or reordered doorbell finds nothing queued and does nothing.
    Returns how many bids it decided."""
    total = 0
    while True:
        with transaction.atomic():
            auction = _lock_auction(auction_id)
            if auction is None:
                return total
            read = _BatchRead.of(auction_id, settings.BID_BATCH_SIZE)
            pending = read.pending
            if not pending:
                return total
            outbox = Outbox(auction)
            writes = sql.Writes()
            _decide_locked(auction, pending, outbox, writes, now=now or clock.now(), read=read)
            outbox.save_events(writes)
            writes.flush()
            outbox.publish_on_commit()
        total += len(pending)
        if len(pending) < settings.BID_BATCH_SIZE:
            return total


def _lock_auction(auction_id: int) -> Auction | None:
    """The auction row, locked FOR NO KEY UPDATE, with its seller's username in `seller_name`."""
    with sql.cursor() as cursor:
        cursor.execute(_lock_auction_sql(connection.vendor), [auction_id])
        row = cursor.fetchone()
    if row is None:
        return None
    auction = sql.instances(Auction, [row[:-1]])[0]
    auction.seller_name = row[-1]
    return auction


@functools.lru_cache(maxsize=4)
def _lock_auction_sql(vendor: str) -> str:
    lock = " FOR NO KEY UPDATE OF a" if vendor == "postgresql" else ""
    return (f"SELECT {sql.columns(Auction, 'a')}, u.username FROM {Auction._meta.db_table} AS a "
            f"LEFT JOIN {User._meta.db_table} AS u ON u.id = a.seller_id WHERE a.id = %s{lock}")


EVERY_BID = 2**62  # a LIMIT both databases take, for "all of them"


def _queued_bids(auction_id: int, limit: int) -> list[Bid]:
    with sql.cursor() as cursor:
        cursor.execute(_queued_sql(connection.vendor), [auction_id, Bid.Status.QUEUED, limit])
        return sql.instances(Bid, cursor.fetchall())


@functools.lru_cache(maxsize=4)
def _queued_sql(vendor: str) -> str:
    return (f"SELECT {sql.columns(Bid)} FROM {Bid._meta.db_table} WHERE auction_id = %s AND status = %s "
            f"ORDER BY position LIMIT %s")


@dataclass
class _BatchRead:
    """What a batch reads once it holds the auction's lock: its queued bids in position order
    and, on PostgreSQL, in the same statement, the standings of their bidders and of the two
    highest maxima (as `_Book` reads them) and those users' accounts, locked in ascending id
    with their holds and names (as core.ledger.LockedAccounts reads them). Three statements
    were two round trips more per batch, most of a decide's cost when each carries a few bids
    (many auctions, 10 bidders each). Elsewhere `standings` and `accounts` stay None and
    `_Book` and `_Funds` read them themselves."""

    pending: list[Bid]
    standings: list[tuple] | None = None
    accounts: list[tuple] | None = None

    @classmethod
    def of(cls, auction_id: int, limit: int) -> _BatchRead:
        if connection.vendor != "postgresql":
            return cls(_queued_bids(auction_id, limit))
        with sql.cursor() as cursor:
            cursor.execute(_batch_read_sql(), [auction_id, Bid.Status.QUEUED, limit, auction_id, auction_id,
                                               auction_id])
            rows = cursor.fetchall()
        bids, standings, accounts = [], [], []
        for kind, *row in rows:
            if kind == 0:
                bids.append(row[:_BID_COLUMNS])
            elif kind == 1:
                standings.append(row[_BID_COLUMNS:_BID_COLUMNS + len(_STANDING_COLUMNS)])
            else:
                accounts.append(row[_BID_COLUMNS + len(_STANDING_COLUMNS):])
        pending = sorted(sql.instances(Bid, bids), key=lambda bid: bid.position)  # UNION ALL keeps no order
        return cls(pending, standings, accounts)


_BID_COLUMNS = len(Bid._meta.concrete_fields)


@functools.lru_cache(maxsize=1)
def _batch_read_sql() -> str:
    """Params: auction id, the queued status, the batch size, then the auction id three times.
    One row per queued bid (kind 0), standing (1) and account (2), each kind in its own columns,
    the others NULL: cast, as UNION ALL takes each column's type from its first rows."""
    bids, people = Bid._meta.db_table, Participant._meta.db_table
    bid_types = [sql.db_type(f) for f in Bid._meta.concrete_fields]
    standing_types = [sql.db_type(Participant._meta.get_field(f)) for f in ("user", *_STANDING_FIELDS)]
    account_types = [sql.db_type(model._meta.get_field(f)) for model, f in ledger.LOCKED_ACCOUNT_FIELDS]

    def nulls(types: list[str]) -> str:
        return ", ".join(f"CAST(NULL AS {t})" for t in types)

    standing_columns = ", ".join(f"p.{c}" for c in _STANDING_COLUMNS)
    accounts = ledger.locked_accounts_sql("(SELECT user_id FROM who)", "postgresql")
    return (
        f"WITH q AS MATERIALIZED (SELECT {sql.columns(Bid)} FROM {bids} WHERE auction_id = %s AND status = %s "
        f"ORDER BY position LIMIT %s), "
        f"top AS MATERIALIZED (SELECT user_id FROM {people} WHERE auction_id = %s AND EXISTS (SELECT 1 FROM q) "
        f"ORDER BY max_amount DESC, max_position LIMIT 2), "
        f"who AS MATERIALIZED (SELECT bidder_id AS user_id FROM q UNION SELECT user_id FROM top), "
        f"acc AS MATERIALIZED ({accounts}) "
        f"SELECT 0, q.*, {nulls(standing_types)}, {nulls(account_types)} FROM q "
        f"UNION ALL SELECT 1, {nulls(bid_types)}, {standing_columns}, {nulls(account_types)} FROM {people} AS p "
        f"WHERE p.auction_id = %s AND p.user_id IN (SELECT user_id FROM who) "
        f"UNION ALL SELECT 2, {nulls(bid_types)}, {nulls(standing_types)}, acc.* FROM acc"
    )


class _Funds:
    """What each bidder of a batch can commit to the auction, read once for the whole batch.

    Rule 4 allows a bidder their available coins plus their own hold on this auction, that is,
    their balance less what they hold on other auctions. With every bidder's account row locked
    (ascending id, as core.ledger does) that cannot change until the batch commits, and moving
    this auction's hold from leader to leader does not change it either. So the batch reads it
    once, and the hold is moved once per batch, from the leader before it to the leader after
    it: the holds of leaders in between would be placed and released within one transaction."""

    def __init__(self, auction: Auction, user_ids: set[int], rows: list[tuple] | None = None) -> None:
        self.auction = auction
        self.locked = ledger.LockedAccounts(auction_id=auction.pk, user_ids=user_ids, rows=rows)
        self.accounts = self.locked.account_of
        self.available = {user_id: self.locked.available_here(user_id) for user_id in self.accounts}
        self.holder = auction.leader_id if auction.status == Auction.Status.LIVE else None

    def for_bid(self, user_id: int) -> int:
        if self.auction.status != Auction.Status.LIVE:
            return 0
        return self.available.get(user_id, 0)

    def move_hold(self, state: rules.State) -> None:
        """Make the ledger's hold on this auction the leader's max (nobody else's), as of `state`."""
        if state.leader_id is not None:
            self.locked.move_hold(from_user_id=self.holder, to_user_id=state.leader_id,
                                  amount=state.standings[state.leader_id].max_amount)
        elif self.holder is not None:
            self.locked.release_hold(self.holder)
        self.holder = state.leader_id

    def settled(self) -> None:
        self.holder = None  # settlement captured or released every hold
        self.locked.forget()  # through accounts read again: what was read here is stale


def _decide_locked(auction: Auction, pending: list[Bid], outbox: Outbox, writes: sql.Writes, *,
                   now: datetime, read: _BatchRead | None = None) -> _Book:
    """Decide `pending` (position order) against the locked auction; queue the writes of bids,
    standings, holds and auction on `writes` (settling a buy-now at once). The caller holds the
    Auction row lock and the transaction, and flushes `writes` before anything reads those rows.
    `read`: the batch's standings and accounts, when the caller read them with `pending`."""
    bidders = {b.bidder_id for b in pending}
    book = _Book(auction, bidders=bidders, rows=read.standings if read else None)
    users = bidders | set(book.state.standings)
    funds = _Funds(auction, users, rows=read.accounts if read else None)
    names = _names(auction, funds.locked, users)
    outbox.names = names
    moved = False
    for bid in pending:
        request = rules.BidRequest(bid.pk, bid.bidder_id, bid.amount, bid.max_amount, bid.position, bid.received_at)
        before = book.state
        decision = rules.decide_bid(book.terms, before, request, available=funds.for_bid(bid.bidder_id))
        bid.decided_at = now
        if not decision.accepted:
            bid.status, bid.reason = Bid.Status.REJECTED, decision.reason
        else:
            bid.status = Bid.Status.ACCEPTED
            book.state = decision.state
            book.changed.update(
                uid for uid in decision.state.standings
                if before.standings.get(uid) != decision.state.standings[uid]
            )
            moved = True
            auction.current_price = decision.state.current_price
            auction.leader_id = decision.state.leader_id
            auction.bid_count = decision.state.bid_count
            for shown in decision.shown:
                event = outbox.emit("bid.accepted", _accepted_data(book, shown, names), at=now)
                if shown.bid_id == bid.pk and not shown.proxy:
                    bid.seq = event.seq
            if decision.extended_to is not None:
                auction.ends_at = decision.extended_to
                auction.end_version += 1
                outbox.emit("auction.extended", {"ends_at": iso(auction.ends_at)}, at=now)
            for loser in decision.outbid:
                outbox.to_user(loser, {"type": "outbid", "auction_id": auction.pk,
                                       "current_price": decision.state.current_price})
            if decision.bought_now:
                funds.move_hold(book.state)
                moved = False
                funds.locked.write(writes)
                writes.flush()  # the settlement reads the holds just moved
                funds.settled()
                _settle(auction, book, outbox, writes, now=now)
        outbox.to_user(bid.bidder_id, {"type": "bid.result", "bid": _bid_frame(bid, names)})
    if moved:
        funds.move_hold(book.state)
        funds.locked.write(writes)
    outbox.decided.extend(pending)
    _save_decisions(pending, writes)
    book.save(writes)
    return book


def _save_decisions(bids: list[Bid], writes: sql.Writes) -> None:
    adapt = connection.ops.adapt_datetimefield_value
    writes.add(*sql.update(Bid, ("status", "reason", "seq", "decided_at"), ("pk",),
                           [(b.status, b.reason, b.seq, adapt(b.decided_at), b.pk) for b in bids]))


def _bid_frame(bid: Bid, names: dict[int, str]) -> dict[str, Any]:
    return {
        "bid_id": bid.pk, "client_bid_id": bid.client_bid_id, "auction_id": bid.auction_id,
        "bidder": names.get(bid.bidder_id), "amount": bid.amount,
        "max_amount": bid.max_amount if bid.max_amount is not None else bid.amount,
        "position": bid.position, "status": bid.status, "reason": bid.reason, "seq": bid.seq,
        "created_at": iso(bid.received_at), "decided_at": iso(bid.decided_at),
    }


def _accepted_data(book: _Book, shown: rules.Shown, names: dict[int, str]) -> dict[str, Any]:
    state, terms = book.state, book.terms
    return {
        "bid_id": shown.bid_id,
        "bidder": names.get(shown.user_id),
        "amount": shown.amount,
        "proxy": shown.proxy,
        "current_price": state.current_price,
        "leader": names.get(state.leader_id) if state.leader_id else None,
        "min_next_bid": rules.min_next_bid(terms, state),
        "bid_count": state.bid_count,
        "ends_at": iso(state.ends_at),
        "reserve_met": rules.reserve_met(terms, state.current_price),
    }


# --- ending, settling, cancelling -----------------------------------------------------------


def auction_end(*, auction_id: int, now: datetime | None = None) -> bool:
    """End a live auction whose (extended) end has come: decide every bid received before it,
    then settle, in the order the contract requires. Idempotent: a second call does nothing.

    Bids are drained first without the Intake lock so that bidders are not blocked long; the
    final check takes Intake then Auction, so no bid can be received between it and the end."""
    if _queued_bids(auction_id, 1):
        bids_decide_pending(auction_id=auction_id, now=now)
    with transaction.atomic():
        if not intake.lock(auction_id):
            return False
        auction = _lock_auction(auction_id)  # exists: its Intake row does
        now = now or clock.now()
        if auction.status != Auction.Status.LIVE or now < auction.ends_at:
            return False
        outbox = Outbox(auction)
        writes = sql.Writes()
        pending = _queued_bids(auction_id, EVERY_BID)
        if pending:
            book = _decide_locked(auction, pending, outbox, writes, now=now)
            writes.flush()  # the settlement reads the holds the batch moved
        else:
            book = _Book(auction)
        if auction.status == Auction.Status.LIVE and now >= auction.ends_at:
            _settle(auction, book, outbox, writes, now=now)
            book.save(writes)
        if auction.is_final:
            intake.close(auction_id, writes)
        outbox.save_events(writes)
        writes.flush()
        outbox.publish_on_commit()
        return auction.status == Auction.Status.ENDED


def _names(auction: Auction, locked: ledger.LockedAccounts, users: set[int]) -> dict[int, str]:
    """`users`' and the seller's usernames: those `locked` read with their accounts, the others
    (a user without an account, not made by registration) read now."""
    names = dict(locked.names)
    if users - names.keys():
        names.update(selectors.usernames(users - names.keys()))
    if auction.seller_id is not None:  # read with the lock (_lock_auction); the baselines lock otherwise
        names[auction.seller_id] = (getattr(auction, "seller_name", None)
                                    or selectors.usernames([auction.seller_id]).get(auction.seller_id))
    return names


def _settle(auction: Auction, book: _Book, outbox: Outbox, writes: sql.Writes, *, now: datetime) -> None:
    """Rule 8: move exactly final_price from the winner to the seller (or the house), release
    every other hold, mark the auction ended and emit auction.ended; the ledger's writes are
    queued on `writes`, in the caller's transaction. Every participant's account, and the
    seller's on a sale, are locked (ascending id) and read with their holds here in one statement. The
    unique settlement per auction in the ledger makes a second payment impossible."""
    everyone = set(book.everyone())
    outcome = rules.outcome(book.terms, book.state)
    sold = outcome.winner_id is not None and outcome.final_price is not None
    # The seller's account only when it is paid: a seller's auctions ending in the same second
    # on two bid workers would otherwise wait for each other's lock on it, sold or not.
    seller = {auction.seller_id} if sold and auction.seller_id is not None else set()
    locked = ledger.LockedAccounts(auction_id=auction.pk, user_ids=everyone | seller)
    outbox.names = {**(outbox.names or {}), **_names(auction, locked, everyone)}
    if sold:
        if auction.seller_id is not None:
            credit_id = locked.account(auction.seller_id)
        else:
            credit_id = ledger.system_account(Account.Kind.HOUSE).pk
        locked.capture(user_id=outcome.winner_id, amount=outcome.final_price, credit_account_id=credit_id,
                       memo=f"auction #{auction.pk}: {auction.title}")
    locked.release_all()
    locked.write(writes)
    auction.status = Auction.Status.ENDED
    auction.winner_id = outcome.winner_id
    auction.final_price = outcome.final_price
    auction.ended_at = now
    book.state = replace(book.state, status=rules.ENDED)
    outbox.emit("auction.ended", {
        "winner": outbox.names.get(outcome.winner_id) if outcome.winner_id else None,
        "final_price": outcome.final_price,
        "reserve_met": outcome.reserve_met,
    }, at=now)
    outbox.lobby = True
    outbox.finished = "sold" if outcome.winner_id is not None else "unsold"
    for user_id in book.everyone():
        result = "won" if user_id == outcome.winner_id else "lost"
        outbox.to_user(user_id, {"type": "result", "auction_id": auction.pk, "outcome": result,
                                 "final_price": outcome.final_price})
    if auction.seller_id is not None:
        outbox.to_user(auction.seller_id, {"type": "result", "auction_id": auction.pk,
                                           "outcome": "sold" if outcome.winner_id else "unsold",
                                           "final_price": outcome.final_price})


def _release_all_holds(auction_id: int) -> None:
    for account_id in Hold.objects.filter(auction_id=auction_id, active=True).values_list("account_id", flat=True):
        ledger.hold_release(account_id=account_id, auction_id=auction_id)


def auction_cancel(*, auction_id: int, now: datetime | None = None) -> Auction:
    """Cancel at once (staff): pending bids are rejected `auction_not_live`, every hold released,
    `auction.cancelled` emitted; no coins move. 409 if the auction is already final."""
    now = now or clock.now()
    with transaction.atomic():
        if not intake.lock(auction_id):
            raise NotFound("auction not found")
        auction = Auction.objects.select_for_update(no_key=True).get(pk=auction_id)
        if auction.is_final:
            raise Conflict(f"the auction is already {auction.status}", code="auction_final")
        outbox = Outbox(auction, lobby=True)
        pending = list(Bid.objects.filter(auction_id=auction_id, status=Bid.Status.QUEUED))
        names = selectors.usernames({b.bidder_id for b in pending})
        for bid in pending:
            bid.status, bid.reason, bid.decided_at = Bid.Status.REJECTED, rules.AUCTION_NOT_LIVE, now
            outbox.to_user(bid.bidder_id, {"type": "bid.result", "bid": _bid_frame(bid, names)})
        Bid.objects.bulk_update(pending, ["status", "reason", "decided_at"])
        outbox.decided.extend(sorted(pending, key=lambda b: b.position))
        outbox.finished = "cancelled"
        _release_all_holds(auction_id)
        auction.status = Auction.Status.CANCELLED
        auction.ended_at = now
        outbox.emit("auction.cancelled", {}, at=now)
        auction.save(update_fields=["status", "ended_at", "seq"])
        intake.close(auction_id)
        outbox.save_events()
        outbox.publish_on_commit()
    return auction


def auction_reschedule_end(*, auction_id: int, ends_at: datetime, now: datetime | None = None) -> Auction:
    """Operator action: move a scheduled or live auction's end (to now to end it at once, or
    later to extend it). A live auction's stream gets `auction.extended` when the end moves later."""
    now = now or clock.now()
    with transaction.atomic():
        if not intake.lock(auction_id):
            raise NotFound("auction not found")
        auction = Auction.objects.select_for_update(no_key=True).get(pk=auction_id)
        if auction.is_final:
            raise Conflict(f"the auction is already {auction.status}", code="auction_final")
        ends_at = max(ends_at, now)
        if ends_at <= auction.starts_at:
            raise InvalidInput("the end must be after the start", code="invalid_field", details={"field": "ends_at"})
        outbox = Outbox(auction, lobby=True)
        later = ends_at > auction.ends_at
        auction.ends_at = ends_at
        auction.hard_close_at = max(auction.hard_close_at, ends_at)
        auction.end_version += 1
        if later and auction.status == Auction.Status.LIVE:
            outbox.emit("auction.extended", {"ends_at": iso(ends_at)}, at=now)
        auction.save(update_fields=["ends_at", "hard_close_at", "end_version", "seq"])
        outbox.save_events()
        outbox.publish_on_commit()
    if ends_at <= now and auction.status == Auction.Status.LIVE:
        auction_end(auction_id=auction_id, now=now)
        auction.refresh_from_db()
    return auction


def auction_start_now(*, auction_id: int, now: datetime | None = None) -> Auction:
    """Operator action: start a scheduled auction now."""
    now = now or clock.now()
    with transaction.atomic():
        auction = Auction.objects.select_for_update(no_key=True).filter(pk=auction_id).first()
        if auction is None:
            raise NotFound("auction not found")
        if auction.status != Auction.Status.SCHEDULED:
            raise Conflict(f"the auction is {auction.status}", code="auction_not_scheduled")
        if auction.ends_at <= now:
            raise Conflict("the auction's end has passed", code="auction_ended")
        auction.starts_at = now
        auction.save(update_fields=["starts_at"])
    auction_start(auction_id=auction_id, now=now)
    auction.refresh_from_db()
    return auction

"""The auction rules as pure functions (CONTRACT.md, "Auction rules").

Nothing here touches the database or the clock: given the auction's terms, its state and one bid,
`decide_bid` says what happens. Services apply the answer in a transaction; tests and replays can
call these functions directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

LIVE = "live"
SCHEDULED = "scheduled"
ENDED = "ended"
CANCELLED = "cancelled"

AUCTION_NOT_LIVE = "auction_not_live"
AUCTION_ENDED = "auction_ended"
BELOW_MINIMUM = "below_minimum"
INSUFFICIENT_FUNDS = "insufficient_funds"
SELLER_CANNOT_BID = "seller_cannot_bid"


@dataclass(frozen=True)
class Terms:
    """What the seller fixed when creating the auction."""

    starting_price: int
    min_increment: int
    reserve_price: int | None = None
    buy_now_price: int | None = None
    extend_window_s: int = 30
    extend_by_s: int = 30
    hard_close_at: datetime | None = None
    seller_id: int | None = None


@dataclass(frozen=True)
class Standing:
    """One bidder's position in an auction. Maxima are per user: their highest."""

    user_id: int
    max_amount: int
    max_bid_id: int  # the bid that holds the max (proxy events name it)
    max_position: int  # when that max was set: on equal maxima the earlier one leads
    own_amount: int  # highest straight amount they committed to openly
    shown_amount: int | None = None  # highest amount shown for them on the stream


@dataclass(frozen=True)
class State:
    status: str
    ends_at: datetime
    current_price: int | None = None
    leader_id: int | None = None
    bid_count: int = 0
    standings: Mapping[int, Standing] = field(default_factory=dict)


@dataclass(frozen=True)
class BidRequest:
    bid_id: int
    user_id: int
    amount: int
    max_amount: int | None
    position: int
    received_at: datetime

    @property
    def effective_max(self) -> int:
        return max(self.amount, self.max_amount or 0)


@dataclass(frozen=True)
class Shown:
    """One `bid.accepted` event the decision emits."""

    bid_id: int
    user_id: int
    amount: int
    proxy: bool


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str | None
    state: State
    shown: tuple[Shown, ...] = ()
    extended_to: datetime | None = None
    bought_now: bool = False
    outbid: tuple[int, ...] = ()  # users who lost the lead through this decision


@dataclass(frozen=True)
class Outcome:
    winner_id: int | None
    final_price: int | None
    reserve_met: bool | None


def min_next_bid(terms: Terms, state: State) -> int:
    if state.current_price is None:
        return terms.starting_price
    return state.current_price + terms.min_increment


def reserve_met(terms: Terms, price: int | None) -> bool | None:
    if terms.reserve_price is None:
        return None
    return price is not None and price >= terms.reserve_price


def leader_and_price(terms: Terms, standings: Mapping[int, Standing]) -> tuple[int | None, int | None]:
    """Who leads and what they would pay now, from the bidders' maxima (rule 3)."""
    if not standings:
        return None, None
    ranked = sorted(standings.values(), key=lambda s: (-s.max_amount, s.max_position))
    leader = ranked[0]
    if len(ranked) == 1:
        price = max(leader.own_amount, terms.starting_price)
    else:
        second = ranked[1].max_amount
        price = max(leader.own_amount, min(leader.max_amount, second + terms.min_increment))
        price = max(price, terms.starting_price)
    if terms.reserve_price is not None and leader.max_amount >= terms.reserve_price:
        price = max(price, terms.reserve_price)
    return leader.user_id, price


def _reject(state: State, reason: str) -> Decision:
    return Decision(accepted=False, reason=reason, state=state)


def decide_bid(terms: Terms, state: State, bid: BidRequest, *, available: int) -> Decision:
    """Decide one bid against the state left by every bid before it.

    `available` is what the bidder can commit to this auction (their own hold here included).
    """
    if state.status in (SCHEDULED, CANCELLED):
        return _reject(state, AUCTION_NOT_LIVE)
    if state.status == ENDED or bid.received_at >= state.ends_at:
        return _reject(state, AUCTION_ENDED)
    if terms.seller_id is not None and bid.user_id == terms.seller_id:
        return _reject(state, SELLER_CANNOT_BID)

    mine = state.standings.get(bid.user_id)
    is_leader = state.leader_id == bid.user_id
    new_max = bid.effective_max
    open_bid = bid.amount >= min_next_bid(terms, state)
    silent_raise = not open_bid and is_leader and mine is not None and new_max > mine.max_amount
    if not (open_bid or silent_raise):
        return _reject(state, BELOW_MINIMUM)
    if available < new_max:
        return _reject(state, INSUFFICIENT_FUNDS)

    if mine is None:
        standing = Standing(bid.user_id, new_max, bid.bid_id, bid.position, bid.amount if open_bid else 0)
    else:
        standing = mine
        if new_max > mine.max_amount:
            standing = replace(standing, max_amount=new_max, max_bid_id=bid.bid_id, max_position=bid.position)
        if open_bid:
            standing = replace(standing, own_amount=max(standing.own_amount, bid.amount))
    standings = {**state.standings, bid.user_id: standing}

    # Rule 6: the first accepted bid at or above buy-now ends the auction at that price.
    if open_bid and state.bid_count == 0 and terms.buy_now_price is not None and bid.amount >= terms.buy_now_price:
        standings[bid.user_id] = replace(standing, shown_amount=bid.amount)
        new_state = replace(
            state,
            status=ENDED,
            current_price=terms.buy_now_price,
            leader_id=bid.user_id,
            bid_count=1,
            standings=standings,
        )
        shown = (Shown(bid.bid_id, bid.user_id, bid.amount, proxy=False),)
        return Decision(True, None, new_state, shown=shown, bought_now=True)

    leader_id, price = leader_and_price(terms, standings)
    assert leader_id is not None and price is not None
    if silent_raise:
        # Rule 2: a leader's silent raise leaves the price alone unless the new max reaches
        # the reserve (rule 3's reserve floor). The next open bid prices from the new max.
        assert state.current_price is not None
        price = state.current_price
        if terms.reserve_price is not None and new_max >= terms.reserve_price:
            price = max(price, terms.reserve_price)
    elif state.current_price is not None:
        price = max(price, state.current_price)  # a price never goes down

    shown: list[Shown] = []
    if open_bid:
        shown.append(Shown(bid.bid_id, bid.user_id, bid.amount, proxy=False))
    last_shown = shown[-1].amount if shown else state.current_price
    answered = bool(shown) and shown[-1].user_id != leader_id  # e.g. a challenger tying the leader's max
    if price != last_shown or answered:
        # The leader's proxy answers: their bid rises to the price needed to keep the lead.
        leader = standings[leader_id]
        shown.append(Shown(leader.max_bid_id, leader_id, price, proxy=True))
    for item in shown:
        current = standings[item.user_id]
        if current.shown_amount is None or item.amount > current.shown_amount:
            standings[item.user_id] = replace(current, shown_amount=item.amount)

    outbid: list[int] = []
    if state.leader_id is not None and state.leader_id != leader_id:
        outbid.append(state.leader_id)
    if bid.user_id != leader_id and bid.user_id not in outbid:
        outbid.append(bid.user_id)  # a challenger beaten at once by a proxy

    ends_at = state.ends_at
    extended_to = None
    if shown:
        candidate = extension(terms, ends_at=ends_at, received_at=bid.received_at)
        if candidate is not None:
            ends_at = extended_to = candidate

    new_state = replace(
        state,
        current_price=price,
        leader_id=leader_id,
        bid_count=state.bid_count + len(shown),
        ends_at=ends_at,
        standings=standings,
    )
    return Decision(True, None, new_state, shown=tuple(shown), extended_to=extended_to, outbid=tuple(outbid))


def extension(terms: Terms, *, ends_at: datetime, received_at: datetime) -> datetime | None:
    """Rule 5: the new end if a visible bid received at `received_at` extends the auction."""
    if terms.extend_window_s <= 0 or terms.extend_by_s <= 0:
        return None
    if ends_at - received_at > timedelta(seconds=terms.extend_window_s):
        return None
    target = max(ends_at, received_at + timedelta(seconds=terms.extend_by_s))
    if terms.hard_close_at is not None:
        target = min(target, terms.hard_close_at)
    return target if target > ends_at else None


def outcome(terms: Terms, state: State) -> Outcome:
    """Rule 7/8: who wins at the end, and at what price."""
    met = reserve_met(terms, state.current_price)
    if state.leader_id is None or met is False:
        return Outcome(None, None, met)
    return Outcome(state.leader_id, state.current_price, met)


def leaderboard(state: State) -> list[Standing]:
    """Bidders with an accepted (shown) bid, highest shown amount first, the leader first on ties."""
    shown = [s for s in state.standings.values() if s.shown_amount is not None]
    return sorted(
        shown, key=lambda s: (-(s.shown_amount or 0), s.user_id != state.leader_id, s.max_position)
    )

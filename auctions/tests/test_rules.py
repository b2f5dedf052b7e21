"""Unit and property tests for auctions/rules.py against CONTRACT.md, "Auction rules".

Pure functions only: run with `-p no:django`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from auctions.rules import (
    AUCTION_ENDED,
    AUCTION_NOT_LIVE,
    BELOW_MINIMUM,
    CANCELLED,
    ENDED,
    INSUFFICIENT_FUNDS,
    LIVE,
    SCHEDULED,
    SELLER_CANNOT_BID,
    BidRequest,
    Shown,
    Standing,
    State,
    Terms,
    decide_bid,
    extension,
    leader_and_price,
    leaderboard,
    min_next_bid,
    outcome,
    reserve_met,
)

# --- helpers ---------------------------------------------------------------------------------------------------

T0 = datetime(2030, 1, 1, tzinfo=UTC)
END = T0 + timedelta(hours=1)
SELLER = 99
RICH = 10**9
A, B, C = 1, 2, 3


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def terms(**kw) -> Terms:
    """Contract example terms: start 10, increment 5, seller 99, default anti-sniping 30/30."""
    return Terms(**{"starting_price": 10, "min_increment": 5, "seller_id": SELLER, **kw})


def live(**kw) -> State:
    return State(**{"status": LIVE, "ends_at": END, **kw})


def make_bid(user: int, amount: int, max_amount: int | None = None, *, pos: int = 1, t: float = 0) -> BidRequest:
    """bid_id = 100 + position, so bid ids and positions are never confused."""
    return BidRequest(bid_id=100 + pos, user_id=user, amount=amount, max_amount=max_amount, position=pos,
                      received_at=at(t))


def fold(tm: Terms, bids, state: State | None = None, available=RICH):
    """Decide `bids` in order, each against the state the previous left. Returns every decision."""
    state = state or live()
    decisions = []
    for bid in bids:
        d = decide_bid(tm, state, bid, available=available)
        decisions.append(d)
        state = d.state
    return decisions


def play(tm: Terms, *specs, **kw):
    """`play(tm, (A, 20, 100), (B, 50))`: (user, amount[, max]) bids at positions 1, 2, ... at T0."""
    return fold(tm, [make_bid(*spec, pos=i) for i, spec in enumerate(specs, 1)], **kw)


def last(tm: Terms, *specs, **kw):
    return play(tm, *specs, **kw)[-1]


# --- rule 2: minimum -------------------------------------------------------------------------------------------


def test_min_next_bid_is_starting_price_before_any_bid():
    assert min_next_bid(terms(), live()) == 10


def test_min_next_bid_is_current_price_plus_increment_after_a_bid():
    assert min_next_bid(terms(), last(terms(), (A, 20)).state) == 25


def test_first_bid_at_starting_price_is_accepted():
    d = last(terms(), (A, 10))
    assert d.accepted and d.reason is None
    assert d.state.current_price == 10 and d.state.leader_id == A and d.state.bid_count == 1
    assert d.shown == (Shown(101, A, 10, proxy=False),)


def test_first_bid_below_starting_price_is_rejected():
    d = last(terms(), (A, 9, 500))
    assert not d.accepted and d.reason == BELOW_MINIMUM


def test_later_bid_at_current_price_plus_increment_is_accepted():
    d = last(terms(), (A, 20), (B, 25))
    assert d.accepted and d.state.current_price == 25 and d.state.leader_id == B


def test_bid_below_increment_is_rejected():
    d = last(terms(), (A, 20), (B, 24))
    assert not d.accepted and d.reason == BELOW_MINIMUM


def test_non_leader_below_minimum_is_rejected_even_with_a_high_max():
    d = last(terms(), (A, 20), (B, 24, 1000))
    assert not d.accepted and d.reason == BELOW_MINIMUM


def test_rejected_decision_returns_the_state_unchanged():
    before = last(terms(), (A, 20, 100)).state
    d = decide_bid(terms(), before, make_bid(B, 21, pos=2), available=RICH)
    assert d.state is before and d.shown == () and d.extended_to is None and d.outbid == ()


# --- rule 3: proxy bidding (the contract's example, increment 5) -----------------------------------------------


def contract_example():
    return play(terms(), (A, 20, 100), (B, 50), (C, 300))


def test_first_bid_with_a_max_sets_price_to_its_amount():
    d = contract_example()[0]
    assert d.accepted and d.state.current_price == 20 and d.state.leader_id == A
    assert d.shown == (Shown(101, A, 20, proxy=False),)


def test_challenger_is_accepted_then_beaten_at_once_by_the_leaders_proxy():
    d = contract_example()[1]
    assert d.accepted and d.reason is None
    assert d.shown == (Shown(102, B, 50, proxy=False), Shown(101, A, 55, proxy=True))  # proxy names A's max bid
    assert d.state.leader_id == A and d.state.current_price == 55
    assert d.state.bid_count == 3  # both events count
    assert d.outbid == (B,)


def test_bid_above_the_leaders_max_takes_the_lead_at_its_own_amount():
    d = contract_example()[2]
    assert d.accepted and d.state.leader_id == C and d.state.current_price == 300
    assert d.shown == (Shown(103, C, 300, proxy=False),)
    assert d.outbid == (A,)
    assert d.state.bid_count == 4


def test_new_leader_with_max_pays_second_max_plus_increment():
    d = last(terms(), (A, 20, 100), (B, 25, 300))
    assert d.state.leader_id == B and d.state.current_price == 105
    assert d.shown == (Shown(102, B, 25, proxy=False), Shown(102, B, 105, proxy=True))
    assert d.outbid == (A,)


def test_proxy_answer_is_capped_at_the_leaders_max():
    d = last(terms(), (A, 20, 100), (B, 98))
    assert d.state.leader_id == A and d.state.current_price == 100
    assert d.shown[-1] == Shown(101, A, 100, proxy=True)


def test_equal_maxima_the_earlier_bidder_keeps_the_lead():
    d = last(terms(), (A, 20, 100), (B, 30, 100))
    assert d.accepted and d.state.leader_id == A and d.state.current_price == 100
    assert d.outbid == (B,)


def test_tied_challenger_is_answered_by_a_proxy_event_at_the_tie_price():
    d = last(terms(), (A, 20, 100), (B, 100))
    assert d.state.leader_id == A and d.state.current_price == 100
    assert d.shown == (Shown(102, B, 100, proxy=False), Shown(101, A, 100, proxy=True))
    assert d.state.bid_count == 3
    assert [s.user_id for s in leaderboard(d.state)] == [A, B]  # leader first on ties


def test_leader_can_raise_openly_and_the_price_follows_their_own_amount():
    d = last(terms(), (A, 20, 100), (B, 50), (A, 60))
    assert d.accepted and d.state.current_price == 60 and d.state.leader_id == A
    assert d.shown == (Shown(103, A, 60, proxy=False),)
    assert d.outbid == ()


def test_leader_and_price_of_no_standings_is_nobody():
    assert leader_and_price(terms(), {}) == (None, None)


def test_lone_leader_pays_the_larger_of_own_amount_and_starting_price():
    lone = {A: Standing(A, max_amount=100, max_bid_id=101, max_position=1, own_amount=5)}
    assert leader_and_price(terms(), lone) == (A, 10)
    lone = {A: replace(lone[A], own_amount=40)}
    assert leader_and_price(terms(), lone) == (A, 40)


def test_bid_count_increments_once_per_shown_event():
    decisions = contract_example()
    counts = [d.state.bid_count for d in decisions]
    assert counts == [1, 3, 4]
    assert counts[-1] == sum(len(d.shown) for d in decisions)


# --- rule 2 exception: the leader's silent max raise -----------------------------------------------------------


def test_leaders_silent_max_raise_is_accepted_without_events():
    first, silent = play(terms(), (A, 20, 100), (A, 21, 200))
    assert silent.accepted and silent.reason is None and silent.shown == ()
    assert silent.state.standings[A].max_amount == 200 and silent.state.standings[A].max_bid_id == 102


def test_silent_raise_keeps_price_bid_count_leaderboard_and_end_unchanged():
    before = last(terms(), (A, 20, 100), (B, 50)).state
    raise_ = decide_bid(terms(), before, make_bid(A, 1, 200, pos=3, t=3599), available=RICH)  # inside the window
    assert raise_.accepted and raise_.shown == () and raise_.extended_to is None
    after = raise_.state
    assert (after.current_price, after.bid_count, after.ends_at, after.leader_id) == (55, 3, END, A)
    board = lambda state: [(s.user_id, s.shown_amount) for s in leaderboard(state)]  # noqa: E731
    assert board(after) == board(before) == [(A, 55), (B, 50)]


def test_silent_raise_makes_a_later_challenger_face_the_new_max():
    d = last(terms(), (A, 20, 100), (A, 1, 200), (B, 150))
    assert d.state.leader_id == A and d.state.current_price == 155
    assert d.shown == (Shown(103, B, 150, proxy=False), Shown(102, A, 155, proxy=True))


def test_leader_bid_below_minimum_without_a_higher_max_is_rejected():
    assert last(terms(), (A, 20, 100), (A, 21, 100)).reason == BELOW_MINIMUM
    assert last(terms(), (A, 20, 100), (A, 21)).reason == BELOW_MINIMUM


def test_silent_raise_that_reaches_reserve_emits_one_proxy_at_reserve():
    tm = terms(reserve_price=150)
    d = last(tm, (A, 20, 100), (A, 21, 200))
    assert d.accepted and d.shown == (Shown(102, A, 150, proxy=True),)
    assert d.state.current_price == 150 and d.state.bid_count == 2
    assert reserve_met(tm, d.state.current_price) is True


def test_silent_raise_below_reserve_stays_silent():
    d = last(terms(reserve_price=500), (A, 20, 100), (A, 21, 200))
    assert d.accepted and d.shown == () and d.state.current_price == 20


def test_silent_raise_reaching_reserve_inside_the_window_extends_the_end():
    # Contract ambiguity (rule 2 says "no extension ... unless the new max reaches reserve"): rules.py treats the
    # reserve proxy as an accepted, visible bid and extends. Documented here as the implemented reading.
    before = last(terms(reserve_price=150), (A, 20, 100)).state
    d = decide_bid(terms(reserve_price=150), before, make_bid(A, 21, 200, pos=2, t=3590), available=RICH)
    assert d.shown == (Shown(102, A, 150, proxy=True),)
    assert d.extended_to == at(3620) == d.state.ends_at


def test_silent_raise_after_a_tie_leaves_the_price_unchanged():
    before = last(terms(), (A, 20, 100), (B, 100)).state
    d = decide_bid(terms(), before, make_bid(A, 1, 200, pos=3, t=3590), available=RICH)
    assert d.accepted and d.shown == () and d.extended_to is None
    assert (d.state.current_price, d.state.bid_count, d.state.ends_at) == (100, before.bid_count, END)


# --- rule 4: funds ---------------------------------------------------------------------------------------------


def test_insufficient_funds_when_available_is_below_the_bid_max():
    d = last(terms(), (A, 20, 100), available=99)
    assert not d.accepted and d.reason == INSUFFICIENT_FUNDS


def test_available_equal_to_the_max_is_enough():
    assert last(terms(), (A, 20, 100), available=100).accepted


def test_insufficient_funds_for_a_straight_bid_without_max():
    assert last(terms(), (A, 20), available=19).reason == INSUFFICIENT_FUNDS


def test_silent_raise_beyond_available_is_rejected_insufficient_funds():
    before = last(terms(), (A, 20, 100)).state
    d = decide_bid(terms(), before, make_bid(A, 21, 200, pos=2), available=150)
    assert not d.accepted and d.reason == INSUFFICIENT_FUNDS and d.state is before


# --- rules 1 and 8: status, time, seller -----------------------------------------------------------------------


def test_seller_cannot_bid():
    d = last(terms(), (SELLER, 50))
    assert not d.accepted and d.reason == SELLER_CANNOT_BID


def test_bid_just_before_ends_at_is_accepted():
    d = decide_bid(terms(), live(), make_bid(A, 20, t=3599.999), available=RICH)
    assert d.accepted


@pytest.mark.parametrize("t", [3600, 3600.001, 7200])
def test_bid_received_at_or_after_ends_at_is_rejected_auction_ended(t):
    d = decide_bid(terms(), live(), make_bid(A, 20, t=t), available=RICH)
    assert not d.accepted and d.reason == AUCTION_ENDED


def test_bid_on_an_ended_auction_is_rejected_auction_ended():
    d = decide_bid(terms(), live(status=ENDED), make_bid(A, 20), available=RICH)
    assert d.reason == AUCTION_ENDED


@pytest.mark.parametrize("status", [SCHEDULED, CANCELLED])
def test_bid_on_a_scheduled_or_cancelled_auction_is_rejected_auction_not_live(status):
    state = live(status=status)
    d = decide_bid(terms(), state, make_bid(A, 20), available=RICH)
    assert not d.accepted and d.reason == AUCTION_NOT_LIVE and d.state is state


# --- rule 5: anti-sniping --------------------------------------------------------------------------------------


def test_bid_within_the_window_extends_to_received_at_plus_extend_by():
    d = decide_bid(terms(), live(), make_bid(A, 20, t=3590), available=RICH)
    assert d.extended_to == at(3620) == d.state.ends_at


def test_bid_exactly_extend_window_s_before_the_end_is_within_the_window():
    d = decide_bid(terms(extend_by_s=60), live(), make_bid(A, 20, t=3570), available=RICH)
    assert d.extended_to == at(3630)


def test_bid_outside_the_window_does_not_extend():
    d = decide_bid(terms(), live(), make_bid(A, 20, t=3569), available=RICH)
    assert d.accepted and d.extended_to is None and d.state.ends_at == END


def test_extension_never_moves_the_end_earlier():
    d = decide_bid(terms(extend_window_s=60, extend_by_s=10), live(), make_bid(A, 20, t=3560), available=RICH)
    assert d.extended_to is None and d.state.ends_at == END


def test_extension_is_capped_at_the_hard_close():
    d = decide_bid(terms(hard_close_at=at(3610)), live(), make_bid(A, 20, t=3595), available=RICH)
    assert d.extended_to == at(3610) == d.state.ends_at
    at_cap = live(ends_at=at(3610))
    d = decide_bid(terms(hard_close_at=at(3610)), at_cap, make_bid(A, 20, t=3609), available=RICH)
    assert d.accepted and d.extended_to is None and d.state.ends_at == at(3610)


@pytest.mark.parametrize("window, by", [(0, 30), (30, 0), (0, 0)])
def test_zero_window_or_extend_by_disables_anti_sniping(window, by):
    tm = terms(extend_window_s=window, extend_by_s=by)
    d = decide_bid(tm, live(), make_bid(A, 20, t=3599), available=RICH)
    assert d.accepted and d.extended_to is None and d.state.ends_at == END
    assert extension(tm, ends_at=END, received_at=at(3599)) is None


def test_challenger_beaten_at_once_by_a_proxy_still_extends():
    before = last(terms(), (A, 20, 100)).state
    d = decide_bid(terms(), before, make_bid(B, 50, pos=2, t=3595), available=RICH)
    assert d.state.leader_id == A and d.extended_to == at(3625)


def test_rejected_bid_inside_the_window_does_not_extend():
    d = decide_bid(terms(), live(), make_bid(A, 5, t=3595), available=RICH)
    assert not d.accepted and d.extended_to is None and d.state.ends_at == END


# --- rule 6: buy now -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [300, 450])
def test_first_bid_at_or_above_buy_now_ends_the_auction_at_the_buy_now_price(amount):
    d = last(terms(buy_now_price=300), (A, amount))
    assert d.accepted and d.bought_now
    assert d.state.status == ENDED and d.state.current_price == 300 and d.state.leader_id == A
    assert d.state.bid_count == 1 and d.shown == (Shown(101, A, amount, proxy=False),)
    assert outcome(terms(buy_now_price=300), d.state).winner_id == A
    assert outcome(terms(buy_now_price=300), d.state).final_price == 300


def test_bid_after_a_buy_now_win_is_rejected_auction_ended():
    d = last(terms(buy_now_price=300), (A, 300), (B, 400))
    assert not d.accepted and d.reason == AUCTION_ENDED


def test_first_bid_whose_max_but_not_amount_reaches_buy_now_does_not_buy():
    d = last(terms(buy_now_price=300), (A, 20, 500))
    assert d.accepted and not d.bought_now and d.state.status == LIVE and d.state.current_price == 20


def test_a_proxy_raise_never_triggers_buy_now():
    d = last(terms(buy_now_price=300), (A, 20, 500), (B, 310))
    assert d.shown[-1] == Shown(101, A, 315, proxy=True)
    assert not d.bought_now and d.state.status == LIVE


def test_buy_now_is_not_offered_after_the_first_accepted_bid():
    d = last(terms(buy_now_price=300), (A, 20), (B, 300))
    assert d.accepted and not d.bought_now and d.state.status == LIVE and d.state.current_price == 300


def test_a_rejected_first_bid_does_not_use_up_buy_now():
    first = decide_bid(terms(buy_now_price=300), live(), make_bid(A, 300), available=10)
    d = decide_bid(terms(buy_now_price=300), first.state, make_bid(B, 300, pos=2), available=RICH)
    assert first.reason == INSUFFICIENT_FUNDS and d.bought_now


# --- rule 7: reserve; rule 8: outcome --------------------------------------------------------------------------


def test_reserve_met_is_null_without_a_reserve():
    assert reserve_met(terms(), None) is None and reserve_met(terms(), 10**6) is None


@pytest.mark.parametrize("price, met", [(None, False), (99, False), (100, True), (101, True)])
def test_reserve_met_is_false_until_the_price_reaches_the_reserve(price, met):
    assert reserve_met(terms(reserve_price=100), price) is met


def test_price_jumps_to_the_reserve_once_the_leaders_max_reaches_it():
    d = last(terms(reserve_price=80), (A, 20, 100))
    assert d.shown == (Shown(101, A, 20, proxy=False), Shown(101, A, 80, proxy=True))
    assert d.state.current_price == 80 and d.state.bid_count == 2


def test_price_stays_below_the_reserve_while_no_max_reaches_it():
    d = last(terms(reserve_price=200), (A, 20, 100), (B, 50))
    assert d.state.current_price == 55
    assert reserve_met(terms(reserve_price=200), d.state.current_price) is False


def test_outcome_without_bids_has_no_winner():
    assert outcome(terms(), live(status=ENDED)) == outcome(terms(), live())
    assert outcome(terms(), live()).winner_id is None and outcome(terms(), live()).final_price is None


def test_outcome_without_reserve_the_leader_wins_at_the_current_price():
    state = contract_example()[-1].state
    o = outcome(terms(), state)
    assert (o.winner_id, o.final_price, o.reserve_met) == (C, 300, None)


def test_outcome_with_reserve_not_met_has_no_winner():
    state = last(terms(reserve_price=200), (A, 20, 100), (B, 50)).state
    o = outcome(terms(reserve_price=200), state)
    assert (o.winner_id, o.final_price, o.reserve_met) == (None, None, False)


def test_outcome_with_reserve_met_the_leader_wins():
    state = last(terms(reserve_price=80), (A, 20, 100), (B, 50)).state
    o = outcome(terms(reserve_price=80), state)
    assert (o.winner_id, o.final_price, o.reserve_met) == (A, 80, True)


# --- leaderboard -----------------------------------------------------------------------------------------------


def test_leaderboard_lists_highest_shown_amount_first():
    state = contract_example()[-1].state
    assert [(s.user_id, s.shown_amount) for s in leaderboard(state)] == [(C, 300), (A, 55), (B, 50)]


def test_leaderboard_puts_the_leader_first_on_ties():
    standings = {
        B: Standing(B, 100, 102, 2, own_amount=100, shown_amount=100),
        A: Standing(A, 100, 101, 3, own_amount=20, shown_amount=100),
    }
    state = live(current_price=100, leader_id=A, bid_count=3, standings=standings)
    assert [s.user_id for s in leaderboard(state)] == [A, B]


def test_leaderboard_shows_amounts_never_hidden_maxima():
    state = last(terms(), (A, 20, 100), (B, 50)).state
    assert [(s.user_id, s.shown_amount) for s in leaderboard(state)] == [(A, 55), (B, 50)]


def test_leaderboard_skips_users_without_a_shown_bid():
    hidden = Standing(B, 100, 102, 2, own_amount=0, shown_amount=None)
    state = live(standings={B: hidden})
    assert leaderboard(state) == []


# --- property tests --------------------------------------------------------------------------------------------

USERS = [1, 2, 3] * 3 + [SELLER]  # three bidders, and the seller now and then
SOON = at(30)  # property auctions end soon, so the window, the end and the hard close all get exercised


@st.composite
def any_terms(draw) -> Terms:
    start = draw(st.integers(1, 40))
    reserve = draw(st.none() | st.integers(1, 150))
    floor = max(start, reserve or 0)  # creation refuses a buy-now below the start or the reserve
    buy_now = draw(st.none() | st.integers(floor, floor + 40))
    return Terms(
        starting_price=start,
        min_increment=draw(st.integers(1, 10)),
        reserve_price=reserve,
        buy_now_price=buy_now,
        extend_window_s=draw(st.sampled_from([0, 10, 30])),
        extend_by_s=draw(st.sampled_from([0, 15, 30])),
        hard_close_at=draw(st.none() | st.integers(30, 90).map(at)),
        seller_id=SELLER,
    )


# One planned bid: (user, amount offset from min_next_bid, extra max above amount or None,
#                   available offset from the bid's max, seconds after the previous bid).
steps = st.lists(
    st.tuples(st.sampled_from(USERS), st.integers(-15, 30), st.none() | st.integers(0, 80),
              st.integers(-15, 40), st.integers(0, 8)),
    max_size=14,
)
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_plan(tm: Terms, plan):
    """Turn a plan into concrete bids (amounts relative to the running min_next_bid) and fold them.

    Returns [(state_before, bid, available, decision)]."""
    state, t, history = live(ends_at=SOON), 0, []
    for pos, (user, offset, extra, slack, dt) in enumerate(plan, 1):
        t += dt
        amount = max(1, min_next_bid(tm, state) + offset)
        bid = make_bid(user, amount, None if extra is None else amount + extra, pos=pos, t=t)
        available = max(0, bid.effective_max + slack)
        decision = decide_bid(tm, state, bid, available=available)
        history.append((state, bid, available, decision))
        state = decision.state
    return history


def expected_rejection(tm: Terms, state: State, bid: BidRequest, available: int) -> str | None:
    """The contract's gates (in rules.py's order): status, time, seller, minimum (or silent raise), funds."""
    if state.status in (SCHEDULED, CANCELLED):
        return AUCTION_NOT_LIVE
    if state.status == ENDED or bid.received_at >= state.ends_at:
        return AUCTION_ENDED
    if bid.user_id == tm.seller_id:
        return SELLER_CANNOT_BID
    mine = state.standings.get(bid.user_id)
    silent_raise = state.leader_id == bid.user_id and bid.effective_max > mine.max_amount
    if bid.amount < min_next_bid(tm, state) and not silent_raise:
        return BELOW_MINIMUM
    if available < bid.effective_max:
        return INSUFFICIENT_FUNDS
    return None


def check_decision(tm: Terms, before: State, bid: BidRequest, available: int, d) -> None:
    after = d.state
    assert d.reason == expected_rejection(tm, before, bid, available)
    assert d.accepted == (d.reason is None)
    if not d.accepted:
        assert after is before and d.shown == () and d.extended_to is None and not d.bought_now
        return

    # Who leads: the highest max, the earlier one on equal maxima.
    ranked = sorted(after.standings.values(), key=lambda s: (-s.max_amount, s.max_position))
    leader = after.standings[after.leader_id]
    assert leader == ranked[0]
    assert available >= bid.effective_max
    assert after.standings[bid.user_id].max_amount >= bid.effective_max  # maxima are per user: their highest

    # The price: never down, never below the start, never above the leader's max, at least the reserve once
    # the leader's max reaches it.
    price = after.current_price
    assert before.current_price is None or price >= before.current_price
    assert tm.starting_price <= price <= leader.max_amount
    if tm.reserve_price is not None and leader.max_amount >= tm.reserve_price:
        assert price >= tm.reserve_price
    assert min_next_bid(tm, after) == price + tm.min_increment

    # Events: the bid itself (if it met the minimum), then at most one proxy for the leader at the new price.
    opened = bid.amount >= min_next_bid(tm, before)
    own = [s for s in d.shown if not s.proxy]
    proxies = [s for s in d.shown if s.proxy]
    assert own == ([Shown(bid.bid_id, bid.user_id, bid.amount, False)] if opened else [])
    assert len(proxies) <= 1 and (not proxies or d.shown[-1] == proxies[0])
    for p in proxies:
        assert (p.user_id, p.bid_id, p.amount) == (after.leader_id, leader.max_bid_id, price)
    for s in d.shown:
        assert s.amount <= after.standings[s.user_id].max_amount
        assert after.standings[s.user_id].shown_amount >= s.amount
    assert after.bid_count == before.bid_count + len(d.shown)
    if not d.shown:  # a silent raise: nothing visible moves
        assert (after.current_price, after.leader_id, after.bid_count, after.ends_at) == (
            before.current_price, before.leader_id, before.bid_count, before.ends_at)

    # Outbid: the previous leader when the lead changes, and a challenger who does not lead.
    assert (before.leader_id in d.outbid) == (before.leader_id not in (None, after.leader_id))
    assert (bid.user_id in d.outbid) == (bid.user_id != after.leader_id)

    # Buy now: only the first accepted bid, on its amount; it ends the auction at the buy-now price.
    buys = tm.buy_now_price is not None and before.bid_count == 0 and opened and bid.amount >= tm.buy_now_price
    assert d.bought_now == buys
    assert (after.status == ENDED) == buys
    if buys:
        assert price == tm.buy_now_price and after.leader_id == bid.user_id and after.bid_count == 1

    # Anti-sniping: the end never moves back nor past the hard close; only visible bids in the window move it.
    assert after.ends_at >= before.ends_at
    if tm.hard_close_at is not None:
        assert after.ends_at <= tm.hard_close_at
    if d.extended_to is not None:
        assert d.shown and after.ends_at == d.extended_to > before.ends_at
        assert before.ends_at - bid.received_at <= timedelta(seconds=tm.extend_window_s)
    else:
        assert after.ends_at == before.ends_at


@PROPS
@given(any_terms(), steps)
def test_every_decision_keeps_the_contract_invariants(tm, plan):
    history = run_plan(tm, plan)
    shown_total = 0
    for before, bid, available, d in history:
        check_decision(tm, before, bid, available, d)
        shown_total += len(d.shown)
        assert d.state.bid_count == shown_total
        board = leaderboard(d.state)
        assert [s.shown_amount for s in board] == sorted((s.shown_amount for s in board), reverse=True)
    if history:
        final = history[-1][3].state
        o = outcome(tm, final)
        assert o.reserve_met == reserve_met(tm, final.current_price)
        if o.winner_id is not None:
            assert (o.winner_id, o.final_price) == (final.leader_id, final.current_price)
            assert o.reserve_met in (None, True)


@PROPS
@given(any_terms(), steps)
def test_replaying_the_same_bids_gives_the_same_decisions(tm, plan):
    history = run_plan(tm, plan)
    state = live(ends_at=SOON)
    for before, bid, available, d in history:
        assert state == before
        again = decide_bid(tm, state, bid, available=available)
        assert again == d
        state = again.state


TIE = [(A, 10, 80, 0, 0), (B, 75, None, 0, 1)]  # with terms(): A bids 20 max 100, then B bids 100 straight


@PROPS
@given(any_terms(), steps)
@example(terms(), TIE)
def test_the_leader_always_tops_the_leaderboard_at_the_current_price(tm, plan):
    for _, _, _, d in run_plan(tm, plan):
        if d.accepted:
            board = leaderboard(d.state)
            assert board[0].user_id == d.state.leader_id
            if not d.bought_now:
                assert board[0].shown_amount == d.state.current_price


@PROPS
@given(any_terms(), steps)
@example(terms(), TIE + [(A, -104, 199, 0, 1)])  # then A raises their max to 200 with a 1-coin bid
def test_a_silent_raise_is_invisible_unless_it_reaches_the_reserve(tm, plan):
    for before, bid, _, d in run_plan(tm, plan):
        if d.accepted and bid.amount < min_next_bid(tm, before):
            old_max = before.standings[bid.user_id].max_amount
            reaches = tm.reserve_price is not None and old_max < tm.reserve_price <= bid.effective_max
            if reaches:
                assert d.shown == (Shown(bid.bid_id, bid.user_id, tm.reserve_price, True),)
            else:
                assert d.shown == () and d.state.current_price == before.current_price

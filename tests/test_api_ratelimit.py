"""core.ratelimit: the per-user token bucket shared by REST and WebSocket bids."""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core import ratelimit
from core.errors import RateLimited
from core.ratelimit import bid_rate_check


@pytest.fixture
def rate(settings):
    settings.BID_RATE_PER_SECOND = 2.0
    settings.BID_RATE_BURST = 3
    return settings


def test_a_full_bucket_allows_a_burst_then_refuses(rate):
    for _ in range(3):
        bid_rate_check(7, now=1000.0)
    with pytest.raises(RateLimited) as refused:
        bid_rate_check(7, now=1000.0)
    assert refused.value.status == 429
    assert refused.value.code == "rate_limited"
    assert refused.value.headers == {"Retry-After": "1"}


def test_the_bucket_refills_at_the_rate(rate):
    for _ in range(3):
        bid_rate_check(7, now=1000.0)
    with pytest.raises(RateLimited):
        bid_rate_check(7, now=1000.25)
    bid_rate_check(7, now=1000.5)  # 2/s: one token after half a second
    with pytest.raises(RateLimited):
        bid_rate_check(7, now=1000.5)


def test_the_bucket_never_holds_more_than_the_burst(rate):
    bid_rate_check(7, now=1000.0)
    for _ in range(3):
        bid_rate_check(7, now=5000.0)
    with pytest.raises(RateLimited):
        bid_rate_check(7, now=5000.0)


def test_retry_after_is_whole_seconds_until_a_token(settings):
    settings.BID_RATE_PER_SECOND = 0.25
    settings.BID_RATE_BURST = 1
    bid_rate_check(7, now=1000.0)
    with pytest.raises(RateLimited) as refused:
        bid_rate_check(7, now=1000.5)
    assert refused.value.headers["Retry-After"] == "4"  # 3.5 s to go, rounded up


def test_each_user_has_their_own_bucket(rate):
    for _ in range(3):
        bid_rate_check(7, now=1000.0)
    bid_rate_check(8, now=1000.0)


def test_the_default_rate_sustains_at_least_ten_bids_a_second(settings):
    assert settings.BID_RATE_PER_SECOND >= 10
    now = 1000.0
    for _ in range(settings.BID_RATE_BURST):
        bid_rate_check(7, now=now)
    for _ in range(50):
        now += 0.1
        bid_rate_check(7, now=now)


def test_the_server_clock_is_used_by_default(rate):
    for _ in range(3):
        bid_rate_check(7)
    with pytest.raises(RateLimited):
        bid_rate_check(7)


def test_an_unreachable_redis_lets_bids_through(rate, monkeypatch):
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    monkeypatch.setattr(ratelimit, "client", lambda: dead)
    for _ in range(5):
        bid_rate_check(7, now=1000.0)


def test_a_batch_takes_one_token_per_bid_in_order_in_one_round_trip(rate):
    """A web process's intake batch (auctions.services.bids_submit_many): two bids of one user
    in it take two tokens, as two requests would."""
    answers = ratelimit.bid_rate_take([7, 8, 7, 7, 7], now=1000.0)
    assert [a is None for a in answers] == [True, True, True, True, False]
    assert answers[4].headers == {"Retry-After": "1"}
    bid_rate_check(8, now=1000.0)  # user 8 took one of three


def test_a_batch_after_redis_lost_its_scripts_loads_the_script_again(rate):
    """A restarted Redis has no scripts: the batch's EVALSHAs answer NOSCRIPT, and the limiter
    loads the script and takes the tokens, rather than letting every bid through unchecked."""
    from tasks.redis_client import client

    ratelimit.bid_rate_take([7, 8], now=1000.0)
    client().script_flush()
    answers = ratelimit.bid_rate_take([7, 7, 7], now=1000.0)
    assert [a is None for a in answers] == [True, True, False]  # 3 tokens: one taken before the flush

"""Bid rate limiting: one token bucket per user in Redis, shared by REST and WebSocket bids.

The bucket holds up to BID_RATE_BURST tokens and refills at BID_RATE_PER_SECOND; a bid takes one.
The whole read-refill-take step is one Lua script, so concurrent requests from many processes
cannot both take the last token, and the time comes from the Redis server (one clock for every
process). The key expires once a full bucket would have refilled, so idle users cost nothing.

If Redis cannot be reached the check lets the bid through: rate limiting protects the platform,
it must not turn a broker hiccup into refused bids (the bid itself is durable in the database).
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from redis.exceptions import NoScriptError, RedisError

from core.errors import RateLimited
from tasks.redis_client import client

log = logging.getLogger(__name__)

KEY_PREFIX = "gavel:rate:bid:"

# KEYS[1] bucket; ARGV: rate per second, burst, now (seconds; negative = use the server's TIME).
# Returns {allowed (0/1), seconds to wait for one token (string: Lua numbers become integers)}.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""

_script = None


def _bucket():
    global _script
    redis = client()
    # register_script binds to a client; the client is per process (see tasks.redis_client).
    if _script is None or _script.registered_client is not redis:
        _script = redis.register_script(_TOKEN_BUCKET)
    return _script


def bid_rate_check(user_id: int, *, now: float | None = None) -> None:
    """Take one token from the user's bid bucket, or raise RateLimited (429) carrying a
    `Retry-After` header: whole seconds, at least 1, until a token is available.
    Call it only once every other check on the bid has passed, so refused bids cost nothing.
    `now` (seconds) is for tests; by default the Redis server's clock is used.
    A non-positive BID_RATE_PER_SECOND disables the limit."""
    refusal = bid_rate_take([user_id], now=now)[0]
    if refusal is not None:
        raise refusal


def bid_rate_take(user_ids: list[int], *, now: float | None = None) -> list[RateLimited | None]:
    """bid_rate_check for several bids at once, in one Redis round trip (a web process's intake
    batch, auctions.services.bids_submit_many): one token each, taken in list order, so two bids
    of one user in the batch take two. Returns, per bid, None (let through) or the RateLimited
    to answer it with."""
    rate = float(settings.BID_RATE_PER_SECOND)
    burst = int(settings.BID_RATE_BURST)
    if rate <= 0 or not user_ids:
        return [None] * len(user_ids)
    try:
        if len(user_ids) == 1:  # a lone bid: the script's own call, one round trip
            answers = [_bucket()(keys=[f"{KEY_PREFIX}{user_ids[0]}"], args=[rate, burst, -1 if now is None else now])]
        else:
            answers = _take_pipelined(user_ids, [rate, burst, -1 if now is None else now])
    except RedisError:
        log.warning("bid rate limiter unavailable; letting the bids through", exc_info=True)
        return [None] * len(user_ids)
    return [None if int(allowed) else _refusal(float(wait)) for allowed, wait in answers]


def _take_pipelined(user_ids: list[int], args: list) -> list:
    """EVALSHA per bid in one pipeline. Not through the Script object: a pipeline holding one
    asks Redis SCRIPT EXISTS before every execute, a second round trip per batch. A Redis that
    lost its script cache (a restart) answers NOSCRIPT: load the script and go again."""
    script = _bucket()
    for attempt in (1, 2):
        pipe = script.registered_client.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.evalsha(script.sha, 1, f"{KEY_PREFIX}{user_id}", *args)
        try:
            return pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            script.registered_client.script_load(_TOKEN_BUCKET)
    raise AssertionError("unreachable")


def _refusal(wait: float) -> RateLimited:
    retry_after = max(1, math.ceil(wait))
    return RateLimited(
        "too many bids; slow down",
        details={"retry_after": retry_after},
        headers={"Retry-After": str(retry_after)},
    )

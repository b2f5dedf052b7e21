"""GET /api/health: can this deployment take and decide bids right now?

Each check answers "ok" or a short reason. 200 when all are ok, else 503 with status "fail", so
a load balancer or an operator sees at once which part is down:
- database: SELECT 1;
- broker: Redis PING (Celery's broker and our own keys: assignment, heartbeats, rate limits);
- channel_layer: PING of the channel layer's Redis, as CHANNEL_LAYERS names it (the same server
  today, but it is the part that carries every event to the sockets, so it gets its own line);
- bid_workers: at least one bid worker heartbeated within BID_WORKER_TIMEOUT_S;
- scheduler: the lifecycle tick ran within the last SCHEDULER_STALE_S seconds (beat sends it and
  the default worker runs it, so this fails when either is down).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Literal

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest
from ninja import Router, Schema, Status

from tasks import assignment
from tasks.redis_client import client

log = logging.getLogger(__name__)

SCHEDULER_STALE_S = 5.0

router = Router(tags=["operations"])


class HealthChecks(Schema):
    database: str
    broker: str
    channel_layer: str
    bid_workers: str
    scheduler: str


class HealthOut(Schema):
    status: Literal["ok", "fail"]
    checks: HealthChecks


def _failure(what: str, exc: Exception) -> str:
    log.warning("health: %s check failed", what, exc_info=True)
    return f"error: {type(exc).__name__}"


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _failure("database", exc)
    return "ok"


def _broker() -> str:
    try:
        client().ping()
    except Exception as exc:
        return _failure("broker", exc)
    return "ok"


_layer_clients: dict[tuple[int, str], redis.Redis] = {}


def _layer_client() -> redis.Redis:
    """A client for the channel layer's (first) Redis host, made once per process and address."""
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    address = host["address"] if isinstance(host, dict) else host
    key = (os.getpid(), str(address))
    found = _layer_clients.get(key)
    if found is None:
        found = _layer_clients[key] = redis.Redis.from_url(str(address), socket_timeout=1, socket_connect_timeout=1)
    return found


def _channel_layer() -> str:
    try:
        _layer_client().ping()
    except Exception as exc:
        return _failure("channel_layer", exc)
    return "ok"


def _bid_workers(now: float) -> str:
    try:
        workers = assignment.live_workers(now=now)
    except Exception as exc:
        return _failure("bid_workers", exc)
    return "ok" if workers else "no live bid worker"


def _scheduler(now: float) -> str:
    try:
        tick = assignment.last_tick()
    except Exception as exc:
        return _failure("scheduler", exc)
    if tick is None:
        return "no tick recorded"
    age = now - tick
    return "ok" if age <= SCHEDULER_STALE_S else f"last tick {age:.1f} s ago"


@router.get("/health", response={200: HealthOut, 503: HealthOut}, auth=None)
def health(request: HttpRequest):
    """200 `{status: "ok", checks}` when every check is "ok", else 503 with status "fail"."""
    now = time.time()
    checks = {"database": _database(), "broker": _broker(), "channel_layer": _channel_layer()}
    if checks["broker"] == "ok":
        checks["bid_workers"] = _bid_workers(now)
        checks["scheduler"] = _scheduler(now)
    else:
        # Both live in Redis: no need to wait for two more timeouts to learn the same thing.
        checks["bid_workers"] = checks["scheduler"] = "unknown: broker unreachable"
    ok = all(value == "ok" for value in checks.values())
    return Status(200 if ok else 503, {"status": "ok" if ok else "fail", "checks": checks})

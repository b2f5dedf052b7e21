"""One redis-py client per process for Gavel's own keys (assignment, heartbeats, rate limits)."""

from __future__ import annotations

import os
import threading

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

_client: redis.Redis | None = None
_pid: int | None = None
_lock = threading.Lock()


def client() -> redis.Redis:
    global _client, _pid
    with _lock:
        if _client is None or _pid != os.getpid():
            # Fail fast during an outage: callers (rate limit, health, assignment) have fallbacks,
            # and a request must not hang for seconds of retries.
            _client = redis.Redis.from_url(
                settings.REDIS_URL, decode_responses=True, socket_timeout=2, socket_connect_timeout=1,
                health_check_interval=30, retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            )
            _pid = os.getpid()
        return _client

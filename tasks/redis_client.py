"""One redis-py client per process for Gavel's own keys (assignment, heartbeats, rate limits)."""

from __future__ import annotations

import os
import threading

import redis
from django.conf import settings

_client: redis.Redis | None = None
_pid: int | None = None
_lock = threading.Lock()


def client() -> redis.Redis:
    global _client, _pid
    with _lock:
        if _client is None or _pid != os.getpid():
            _client = redis.Redis.from_url(
                settings.REDIS_URL, decode_responses=True, socket_timeout=5, socket_connect_timeout=5,
                health_check_interval=30,
            )
            _pid = os.getpid()
        return _client

"""Backing services made unreachable for the length of a `with` block, for tests of what a
deployment does when one part is down."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.test import override_settings

from tests.procs import free_port


def dead_url() -> str:
    """A Redis URL where nothing listens (a port just freed)."""
    return f"redis://127.0.0.1:{free_port()}/0"


@contextlib.contextmanager
def redis_unreachable() -> Iterator[None]:
    """Gavel's own Redis client (tasks.redis_client: assignment, heartbeats, metrics, health's
    broker check) dials a dead port inside the block and the real one again after it."""
    from tasks import redis_client

    saved = redis_client._client
    redis_client._client = None
    try:
        with override_settings(REDIS_URL=dead_url()):
            yield
    finally:
        redis_client._client = saved


@contextlib.contextmanager
def channel_layer_unreachable() -> Iterator[None]:
    """The channel layer's configured host is a dead port inside the block."""
    from django.conf import settings

    layers = {"default": {**settings.CHANNEL_LAYERS["default"],
                          "CONFIG": {**settings.CHANNEL_LAYERS["default"]["CONFIG"],
                                     "hosts": [{"address": dead_url()}]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        yield

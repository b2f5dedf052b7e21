"""What-if ASGI entry point for `ws_fanout --experiment ...`: the real core.asgi application with
one library behaviour switched off, to measure what it costs. Not for production.

    no-close-old   Channels (4.2+) runs `aclose_old_connections()` - a sync_to_async hop to the
                   one sync thread - before EVERY message a consumer handles, including each
                   `auction.event` a watcher receives. This replaces it with a no-op coroutine.
    no-gc          gc.disable(): how much of the per-frame cost is the cyclic garbage collector
                   walking a heap that grows with the number of sockets (memory is not reclaimed
                   for cycles meanwhile: only for a bounded benchmark run).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

EXPERIMENTS = {e for e in os.environ.get("GAVEL_BENCH_EXPERIMENT", "").split(",") if e}
KNOWN = {"no-close-old", "no-gc"}
if EXPERIMENTS - KNOWN:
    raise SystemExit(f"unknown experiment(s) {sorted(EXPERIMENTS - KNOWN)}; known: {sorted(KNOWN)}")

if "no-close-old" in EXPERIMENTS:
    import channels.consumer

    async def _no_close_old_connections() -> None:
        return None

    channels.consumer.aclose_old_connections = _no_close_old_connections

if "no-gc" in EXPERIMENTS:
    import gc

    gc.disable()

from core.asgi import application  # noqa: E402

__all__ = ["application"]

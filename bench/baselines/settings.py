"""Settings of a baseline stack: the product's, with the bid intake switched to the baseline.

Only the bid endpoint (ROOT_URLCONF) and the socket's bid submit (apps.BaselinesConfig.ready)
change; auth, snapshots, events, watchers, timers and the ledger stay the product's."""

from django.core.exceptions import ImproperlyConfigured

from core.env import env_str
from core.settings import *  # noqa: F403
from core.settings import INSTALLED_APPS

DESIGNS = ("sync", "naive")
BENCH_DESIGN = env_str("BENCH_DESIGN", "sync")
if BENCH_DESIGN not in DESIGNS:
    raise ImproperlyConfigured(f"BENCH_DESIGN must be one of {', '.join(DESIGNS)}, got {BENCH_DESIGN!r}")

INSTALLED_APPS = [*INSTALLED_APPS, "bench.baselines.apps.BaselinesConfig"]
ROOT_URLCONF = "bench.baselines.urls"

# The product's sweep re-rings Gavel's bid workers for bids queued longer than this; a naive
# baseline's backlog must be decided by its own pool, not quietly by Gavel's pipeline.
BID_SWEEP_AFTER_S = 10.0**9

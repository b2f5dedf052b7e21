from django.apps import AppConfig


class BaselinesConfig(AppConfig):
    name = "bench.baselines"
    label = "bench_baselines"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # core/asgi.py takes its WebSocket routes from realtime.routing, not from a setting, so a
        # settings module cannot route the room's `bid` frame elsewhere. The room consumer hands
        # every bid frame to `bid_intake().submit` (auctions/intake_batch.py); a baseline web
        # process points that at the baseline instead, one bid per thread hop (same argument,
        # same answer). Everything else the socket does (auth, snapshot, events, holding
        # bid.result until bid.queued is out) stays the product's.
        from bench.baselines import edges
        from realtime import consumers

        if not callable(getattr(consumers, "bid_intake", None)):
            raise RuntimeError("realtime.consumers.bid_intake is gone: adapt bench/baselines/apps.py")
        consumers.bid_intake = lambda: edges.ONE_BY_ONE

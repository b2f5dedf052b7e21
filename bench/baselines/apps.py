from django.apps import AppConfig


class BaselinesConfig(AppConfig):
    name = "bench.baselines"
    label = "bench_baselines"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # core/asgi.py takes its WebSocket routes from realtime.routing, not from a setting, so a
        # settings module cannot route the room's `bid` frame elsewhere. The room consumer hands
        # every bid frame to realtime.consumers._submit; a baseline web process points that at
        # the baseline instead (same arguments, same answer). Everything else the socket does
        # (auth, snapshot, events, holding bid.result until bid.queued is out) stays the product's.
        from bench.baselines import edges
        from realtime import consumers

        if not callable(getattr(consumers, "_submit", None)):
            raise RuntimeError("realtime.consumers._submit is gone: adapt bench/baselines/apps.py")
        consumers._submit = edges.ws_submit

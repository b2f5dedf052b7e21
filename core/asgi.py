"""ASGI entry point for uvicorn: Django views over HTTP, Channels consumers over WebSocket."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
# Under ASGI every request's sync code runs in a thread of its own, so a persistent connection is
# never reused and stays open until its thread is gone: the hot-auction benchmark's REST bidders
# ran PostgreSQL out of connections (HTTP 500s). Django's advice: no persistent connections here.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.auth import socket_stack  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi,
    "websocket": socket_stack(URLRouter(websocket_urlpatterns)),
})

"""ASGI entry point for uvicorn: Django views over HTTP, Channels consumers over WebSocket."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
# Under ASGI a request's sync code may run on any of several threads, so a persistent connection
# per thread is rarely reused and stays open until its thread is gone (the hot-auction benchmark's
# REST bidders ran PostgreSQL out of connections), while no persistent connection at all costs a
# new PostgreSQL backend per request. Web processes therefore share a small pool (core/settings.py).
os.environ.setdefault("DB_POOL_MAX", "8")

from core.asgi_handler import get_asgi_application  # noqa: E402

django_asgi = get_asgi_application()

from django.conf import settings  # noqa: E402

from core import logs, redact  # noqa: E402

# uvicorn logs each socket's URL, `?token=` included: keep tokens and cookies out of its logs.
redact.install()
# LOG_FORMAT=json: uvicorn's own lines as JSON objects too.
logs.install_server_format(settings.LOG_FORMAT)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.auth import socket_stack  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi,
    "websocket": socket_stack(URLRouter(websocket_urlpatterns)),
})

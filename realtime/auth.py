"""Socket authentication and origin checks, as ASGI middleware in front of the consumers.

`?token=<access>` wins over the session cookie. A token that is present but bad or expired marks
the scope so the consumer refuses the handshake (HTTP 403). No token and no session: anonymous,
which may watch but not bid."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser
from django.http import parse_cookie

from core import tokens

ANONYMOUS = AnonymousUser()


class SocketAuthMiddleware:
    """Who is on the socket: `?token=` wins over the session cookie; neither is anonymous.

    One layer with one copy of the scope, in place of Channels' cookie, session and auth
    middlewares (plus a token one): every wrapper stays alive as long as its socket, and the
    fan-out benchmark counts memory per idle socket. The user is read once, at the handshake;
    sockets never write to the session."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        scope = dict(scope, user=ANONYMOUS)
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        token = (query.get("token") or [None])[0]
        if token is not None:
            user = await database_sync_to_async(tokens.user_from_token)(token)
            if user is None:
                scope["auth_error"] = "invalid or expired token"
            else:
                scope["user"] = user
        else:
            session_key = _cookie(scope, settings.SESSION_COOKIE_NAME)
            if session_key:
                scope["user"] = await database_sync_to_async(_session_user)(session_key)
        return await self.inner(scope, receive, send)


def _cookie(scope, name: str) -> str | None:
    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            return parse_cookie(value.decode("latin1")).get(name)
    return None


def _session_user(session_key: str):
    """The web pages' logged-in user, checked as Django's own request auth checks it (session
    hash included, so a password change logs sockets out too)."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return auth.get_user(SimpleNamespace(session=session))


class OriginlessAllowedValidator(OriginValidator):
    """Like Channels' AllowedHostsOriginValidator, but a client that sends no Origin at all (a bot,
    a script) is let through: the contract allows it, and such clients cannot carry a victim's
    cookies anyway. A browser always sends Origin, and a foreign one is refused."""

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def socket_stack(inner):
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return OriginlessAllowedValidator(SocketAuthMiddleware(inner), allowed)

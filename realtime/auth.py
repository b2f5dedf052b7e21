"""Socket authentication and origin checks, as ASGI middleware in front of the consumers.

`?token=<access>` wins over the session cookie. A token that is present but bad or expired marks
the scope so the consumer refuses the handshake (HTTP 403). No token and no session: anonymous,
which may watch but not bid."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from channels.sessions import CookieMiddleware, InstanceSessionWrapper
from django.conf import settings

from core import tokens


class TokenAuthMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        token = (query.get("token") or [None])[0]
        if token is not None:
            scope = dict(scope)
            user = await database_sync_to_async(tokens.user_from_token)(token)
            if user is None:
                scope["auth_error"] = "invalid or expired token"
            else:
                scope["user"] = user
        return await self.inner(scope, receive, send)


class ReadOnlySessionMiddleware:
    """Channels' SessionMiddleware without its `send` wrapper. Sockets only read the session, to
    know the user; the wrapper would look at the session on every frame sent (the fan-out
    profile put it at 15% of a web node's CPU) to save changes sockets never make."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


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
    # Session auth runs first (outer), then a token, if given, overrides it.
    sessions = CookieMiddleware(ReadOnlySessionMiddleware(AuthMiddleware(TokenAuthMiddleware(inner))))
    return OriginlessAllowedValidator(sessions, allowed)

"""Access tokens: HS256 JWTs signed with a key derived from SECRET_KEY (PyJWT does the crypto)."""

from __future__ import annotations

import functools
import hashlib
from datetime import timedelta

import jwt
from django.conf import settings
from django.db import connection

from core import clock
from core.models import User

ALGORITHM = "HS256"
ISSUER = "gavel"


def _key() -> bytes:
    return hashlib.sha256(b"gavel-access-token:" + settings.SECRET_KEY.encode()).digest()


def access_token_issue(*, user: User) -> dict[str, object]:
    now = clock.now()
    ttl = settings.ACCESS_TOKEN_TTL
    claims = {
        "sub": str(user.pk),
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
    }
    token = jwt.encode(claims, _key(), algorithm=ALGORITHM)
    return {"access": token, "token_type": "Bearer", "expires_in": ttl}


def user_from_token(token: str) -> User | None:
    """The active user the token names, or None for a bad, expired or foreign token."""
    if not token or len(token) > 4096:
        return None
    try:
        claims = jwt.decode(token, _key(), algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["exp", "sub", "iat"]})
        user_id = int(claims["sub"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return _active_user(user_id)


def _active_user(user_id: int) -> User | None:
    """Every API request reads its user: on PostgreSQL by a statement built once, not compiled by
    the ORM each time (a tenth of a web process's CPU under REST bidding). PostgreSQL's values
    need no conversion for these fields; SQLite's (booleans, datetimes) do, so the ORM reads there."""
    if connection.vendor != "postgresql":
        return next(iter(User.objects.filter(pk=user_id, is_active=True)[:1]), None)
    statement, names = _active_user_sql()
    with connection.cursor() as cursor:
        cursor.execute(statement, [user_id])
        row = cursor.fetchone()
    return None if row is None else User.from_db(connection.alias, names, row)


@functools.cache
def _active_user_sql() -> tuple[str, list[str]]:
    fields = User._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    return (f"SELECT {columns} FROM {quote(User._meta.db_table)} WHERE {quote('id')} = %s AND {quote('is_active')}",
            [f.attname for f in fields])


def user_from_authorization(header: str | None) -> User | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return user_from_token(token.strip())

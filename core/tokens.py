"""Access tokens: HS256 JWTs signed with a key derived from SECRET_KEY (PyJWT does the crypto)."""

from __future__ import annotations

import functools
import hashlib
import time
from datetime import timedelta

import jwt
from django.conf import settings
from django.db import connection

from core import clock, sql
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
    return _cached_active_user(user_id)


# user id -> (monotonic expiry, the active user's field values, or None when there is none)
_users: dict[int, tuple[float, tuple | None]] = {}
_USERS_MOST = 10_000  # entries kept per process before the cache starts over


def _cached_active_user(user_id: int) -> User | None:
    """_active_user, remembered for TOKEN_USER_CACHE_S. Reading the user was a database
    connection checked out of the pool and a query on every API request: with the REST bidding
    benchmark's requests answered from here, the web processes' CPU per bid fell by a quarter
    (docs/performance.md). A user saved or deleted in this process is forgotten at once (the
    signals below); another process's change (an operator in the admin of another web process)
    is seen within TOKEN_USER_CACHE_S. Each call gets its own instance: requests must not share
    one mutable object."""
    ttl = settings.TOKEN_USER_CACHE_S
    if ttl <= 0:
        return _active_user(user_id)
    now = time.monotonic()
    hit = _users.get(user_id)
    if hit is None or hit[0] <= now:
        user = _active_user(user_id)
        if len(_users) >= _USERS_MOST:
            _users.clear()
        hit = (now + ttl, None if user is None else tuple(getattr(user, name) for name in _attnames()))
        _users[user_id] = hit
    values = hit[1]
    return None if values is None else User.from_db(connection.alias, _attnames(), list(values))


def forget_user(user_id: int | None = None) -> None:
    """Drop one user's remembered lookup, or all of them."""
    if user_id is None:
        _users.clear()
    else:
        _users.pop(user_id, None)


@functools.cache
def _attnames() -> list[str]:
    return [f.attname for f in User._meta.concrete_fields]


def _active_user(user_id: int) -> User | None:
    """Every API request reads its user: on PostgreSQL by a statement built once, not compiled by
    the ORM each time (a tenth of a web process's CPU under REST bidding). PostgreSQL's values
    need no conversion for these fields; SQLite's (booleans, datetimes) do, so the ORM reads there."""
    if connection.vendor != "postgresql":
        return next(iter(User.objects.filter(pk=user_id, is_active=True)[:1]), None)
    statement, names = _active_user_sql()
    with sql.cursor() as cursor:
        cursor.execute(statement, [user_id])
        row = cursor.fetchone()
    return None if row is None else User.from_db(connection.alias, names, row)


@functools.cache
def _active_user_sql() -> tuple[str, list[str]]:
    fields = User._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    return (f"SELECT {columns} FROM {quote(User._meta.db_table)} WHERE {quote('id')} = %s AND {quote('is_active')}",
            _attnames())


def user_from_authorization(header: str | None) -> User | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return user_from_token(token.strip())

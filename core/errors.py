"""Errors that services raise and every edge (REST, WebSocket, admin) turns into the contract's
error shape: {"error": {"code", "message", "details"?}} with the matching HTTP status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class InvalidInput(ServiceError):
    status = 400
    code = "invalid_request"


class NotFound(ServiceError):
    status = 404
    code = "not_found"

    def __init__(self, message: str = "not found", **kwargs: Any):
        super().__init__(message, **kwargs)


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class NotAuthenticated(ServiceError):
    status = 401
    code = "not_authenticated"

    def __init__(self, message: str = "authentication required", **kwargs: Any):
        super().__init__(message, **kwargs)


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """What a request meets when PostgreSQL or Redis is down or restarting: not the request's
    fault and not a bug. Edges answer them 503 / an `unavailable` error frame, and the client
    retries (a bid's client_bid_id makes the retry create nothing twice)."""
    import kombu.exceptions
    import redis.exceptions
    from django import db

    return (db.OperationalError, db.InterfaceError, redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError, kombu.exceptions.OperationalError)


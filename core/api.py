"""The REST API root (django-ninja), served at /api/. Routers live beside their domains.

Every error leaves here in the contract's shape, {"error": {"code", "message", "details"?}}:
service errors with their own status and headers, bad bodies and parameters as 400 (never
ninja's 422), a missing or bad token as 401, PostgreSQL or Redis unreachable as 503 with
Retry-After, anything unexpected as a logged 500 that shows the client no traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from auctions.api import router as auctions_router
from core.api_users import WWW_AUTHENTICATE
from core.api_users import router as users_router
from core.errors import ServiceError, unavailable_errors
from core.health import router as health_router

log = logging.getLogger("gavel.api")

api = NinjaAPI(
    title="Gavel",
    version="1",
    description="Real-time English auctions paid in coins. Authenticate with `Authorization: Bearer <access>` "
    'from POST /api/auth/token. Errors are `{"error": {"code", "message", "details"?}}`.',
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def error_response(
    request: HttpRequest,
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    response = api.create_response(request, {"error": error}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@api.exception_handler(ServiceError)
def _service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    response = api.create_response(request, exc.body(), status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def _field(loc: list[Any] | tuple[Any, ...]) -> str:
    # ninja's locations: ("body", <param>, field...), ("query", name), ("path", name).
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[2:]
    elif parts:
        parts = parts[1:]
    return ".".join(parts)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in exc.errors]
    if not errors:
        return error_response(request, 400, "invalid_request", "the request is not valid")
    first = errors[0]
    if not first["field"]:
        return error_response(
            request,
            400,
            "invalid_request",
            f"the request body is not valid: {first['message']}",
            details={"errors": errors},
        )
    return error_response(
        request,
        400,
        "invalid_field",
        f"{first['field']}: {first['message']}",
        details={"field": first["field"], "errors": errors},
    )


@api.exception_handler(AuthenticationError)
def _not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        request,
        401,
        "not_authenticated",
        "authentication required: send `Authorization: Bearer <access token>`",
        headers=WWW_AUTHENTICATE,
    )


_HTTP_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
}


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    status = exc.status_code
    message = "the request body is not valid JSON" if status == 400 else str(exc)
    return error_response(request, status, _HTTP_CODES.get(status, "error"), message)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, "not_found", "not found")


@api.exception_handler(PermissionDenied)
def _permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return error_response(request, 403, "forbidden", "you may not do this")


@api.exception_handler(SuspiciousOperation)
def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # e.g. RequestDataTooBig: a client error, not ours.
    return error_response(request, 400, "invalid_request", "the request could not be accepted")


# A database or Redis that is down or restarting is not the request's fault, nor a bug: 503 with
# Retry-After, so that clients retry (a bid's client_bid_id makes the retry create nothing twice).
# Nothing was acknowledged: a bid is acknowledged only by the 202 after its intake committed.
def _unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.warning("%s %s: a backing service is unavailable: %s: %s", request.method, request.path,
                type(exc).__name__, str(exc)[:200])
    return error_response(request, 503, "unavailable", "the service is briefly unavailable; try again",
                          headers={"Retry-After": "1"})


for _kind in unavailable_errors():
    api.add_exception_handler(_kind, _unavailable)


@api.exception_handler(Exception)
def _crash(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(request, 500, "internal_error", "something went wrong on our side")


api.add_router("", users_router)
api.add_router("", auctions_router)
api.add_router("", health_router)

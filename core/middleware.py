"""Under /api/ a client never sees an HTML page: unknown paths and crashes answer in the
contract's JSON error shape. A crash is logged with its traceback, which the client never sees."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger("gavel.api")


class JsonErrorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/api/") and not _is_json(response):
            if response.status_code == 404:
                return _error(404, "not_found", "no such resource")
            if response.status_code == 405:
                return _error(405, "method_not_allowed", f"{request.method} is not allowed here")
            if response.status_code >= 500:
                return _error(500, "internal_error", "something went wrong on our side")
            if response.status_code == 400:
                return _error(400, "bad_request", "the request could not be understood")
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path.startswith("/api/"):
            log.exception("unhandled error on %s %s", request.method, request.path)
            return _error(500, "internal_error", "something went wrong on our side")
        return None


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)

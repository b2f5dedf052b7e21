"""Middleware of our own, each usable sync and async.

The web nodes run the chain sync, in one thread hop per request (core/asgi_handler.py); Django's
own ASGI handler (its test AsyncClient, for one) runs it async, and there these run in the event
loop instead of adding a thread hop each. WhiteNoise (sync-only) is wrapped for that.

JsonErrorsMiddleware: under /api/ a client never sees an HTML page: unknown paths and crashes
answer in the contract's JSON error shape. A crash is logged with its traceback, which the client
never sees."""

from __future__ import annotations

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from whitenoise.middleware import WhiteNoiseMiddleware

log = logging.getLogger("gavel.api")


class JsonErrorsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        _take_mode(self, get_response)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self._acall(request)
        return self.fix(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self.fix(request, await self.get_response(request))

    @staticmethod
    def fix(request: HttpRequest, response: HttpResponse) -> HttpResponse:
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


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise for /static/, without making every other request leave the event loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        _take_mode(self, get_response)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        # WhiteNoiseMiddleware.__call__'s lookup, then its sync serve on a thread.
        found = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if found is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(found, request)
        return await self.get_response(request)


def _take_mode(middleware, get_response) -> None:
    """Run in the mode of the handler it wraps: Django then needs no adapter on either side."""
    middleware.async_mode = iscoroutinefunction(get_response)
    if middleware.async_mode:
        markcoroutinefunction(middleware)


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)

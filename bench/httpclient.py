"""One HTTP exchange for the load tools (standard library only: the tools run beside the stack
without importing Django)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def exchange(method: str, url: str, body: dict | None = None, token: str | None = None,
             timeout: float = 10.0) -> tuple[int, bytes]:
    """(HTTP status, raw body) of one request with an optional JSON body and bearer token; an
    HTTP error status is an answer like any other. OSError when no answer came."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()

"""WebSocket frames of the contract, encoded compactly, and the reading of client frames."""

from __future__ import annotations

import json
from typing import Any

MAX_CLIENT_FRAME = 4096


class NotJson(ValueError):
    """A client frame that is not JSON text."""


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def error(code: str, message: str, *, client_bid_id: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_bid_id is not None:
        frame["client_bid_id"] = client_bid_id
    # ASCII-escaped: an error may echo what the client sent, and JSON's "\ud800" parses to a
    # lone surrogate that no server can encode as UTF-8 (uvicorn's send would fail, and the
    # socket would go silent). Escaped, it goes back as the client wrote it.
    return json.dumps(frame, separators=(",", ":"))


def _refuse_constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def decode(text: str) -> Any:
    """A client frame's JSON value; NotJson for anything else, including Python's extensions
    (NaN, Infinity) and nesting too deep for the parser (which raises RecursionError, not a
    ValueError, and would otherwise escape the consumer)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise NotJson(str(exc)) from None

"""WebSocket frames of the contract, encoded compactly."""

from __future__ import annotations

import json
from typing import Any

MAX_CLIENT_FRAME = 4096


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def error(code: str, message: str, *, client_bid_id: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_bid_id is not None:
        frame["client_bid_id"] = client_bid_id
    return encode(frame)

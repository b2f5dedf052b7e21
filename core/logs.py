"""Log lines that carry their ids as fields, for people and for log pipelines.

Gavel's log calls pass what a line is about as structured fields, `extra={"auction_id": 42,
"bid_id": 7}`, so that one auction's or one bid's story can be pulled out of every process's
logs. `LOG_FORMAT` (settings) picks how a line is written:

- `plain` (default): `time LEVEL logger: message auction_id=42 bid_id=7`, for a terminal;
- `json`: one JSON object per line, `{"ts", "level", "logger", "message", ...fields}`, every
  field passed in `extra` included, and `exc` with the traceback when there is one.

Both formatters pass the finished line through core.redact, so an access token, a password or a
session cookie that slipped into a message or a field is written as `[redacted]` whatever the
logger (the redact filter on uvicorn's loggers does the same for their records' arguments).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# What a LogRecord carries by itself; anything else on it came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
# The fields the plain format shows, in this order (json shows every field).
PLAIN_FIELDS = ("auction_id", "bid_id", "user_id", "worker")


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a log call passed with `extra`."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")}


class _Redacting(logging.Formatter):
    def redact(self, value: Any) -> Any:
        """`value` with credentials in its strings replaced, through lists and dicts."""
        from core import redact

        if isinstance(value, str):
            return redact.redact(value, pattern=redact.compiled())
        if isinstance(value, dict):
            return {key: self.redact(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(item) for item in value]
        return value


class PlainFormatter(_Redacting):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{key}={getattr(record, key)}" for key in PLAIN_FIELDS if getattr(record, key, None) is not None]
        if extra:
            # On the first line: after a traceback they would be lost among its lines.
            head, sep, tail = line.partition("\n")
            line = f"{head} {' '.join(extra)}{sep}{tail}"
        return self.redact(line)


class JsonFormatter(_Redacting):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # Redacted before encoding: in the encoded line a value's closing quote is escaped, and
        # the pattern would take the backslash for part of a token. default=str: a field that is
        # not JSON (a datetime, a model) is written as its text.
        return json.dumps(self.redact(out), default=str, ensure_ascii=False)


FORMATTERS = {"plain": PlainFormatter, "json": JsonFormatter}

# The loggers uvicorn configures with handlers of its own (they do not propagate to the root).
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def install_server_format(log_format: str) -> None:
    """Give uvicorn's own handlers Gavel's format when it is json, so a web node's output is one
    JSON object per line too. uvicorn set its logging up before it loaded the application, so
    this runs from core.asgi. The plain format leaves uvicorn's lines as uvicorn writes them."""
    if log_format != "json":
        return
    for name in SERVER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(JsonFormatter())

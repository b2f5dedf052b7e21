"""Credentials never reach the logs.

The contract puts a socket's access token in its URL (`/ws/auctions/1/?token=...`), and uvicorn
logs every WebSocket handshake with its query string (`"WebSocket /ws/...?token=eyJ..." [accepted]`,
on `uvicorn.error`, whatever the access-log setting); at debug level the websockets library logs
the request line and headers (the session cookie among them) on the same logger. Anyone who can
read the web node's logs could then act as those users until their tokens expire.

RedactCredentials rewrites such values in a record before any handler sees it. It changes the
strings of `record.args` in place rather than formatting the message, because uvicorn's access
formatter unpacks `args` itself.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.conf import settings

# The loggers a web node's server writes to (uvicorn, and websockets through uvicorn's logger).
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access")


def _pattern() -> re.Pattern[str]:
    names = {"token", "password", settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME}
    params = "|".join(re.escape(name) for name in sorted(names))
    # name=value in a query string or a Cookie header; "Bearer value" in an Authorization header.
    return re.compile(rf"(?<![\w-])((?:{params})=)[^&;\s\"']+|(\bBearer\s+)[^\s\"',;]+", re.IGNORECASE)


_compiled: re.Pattern[str] | None = None


def compiled() -> re.Pattern[str]:
    """The pattern, built once per process (core.logs formats every line with it)."""
    global _compiled
    if _compiled is None:
        _compiled = _pattern()
    return _compiled


def redact(text: str, *, pattern: re.Pattern[str] | None = None) -> str:
    return (pattern or _pattern()).sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


class RedactCredentials(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.pattern = _pattern()

    def _clean(self, value: Any) -> Any:
        return redact(value, pattern=self.pattern) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._clean(value) for key, value in record.args.items()}
        return True


def install(names: tuple[str, ...] = SERVER_LOGGERS) -> None:
    """Put the filter on these loggers (a logger's filters see every record logged on it,
    before its handlers or its parents' do). Idempotent."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())

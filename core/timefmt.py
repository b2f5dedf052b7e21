"""The contract's time format: ISO 8601, UTC, millisecond precision, `Z` suffix."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_aware(text: str) -> datetime:
    """Parse an input time; it must carry an offset (a naive time is refused)."""
    if not isinstance(text, str):
        raise ValueError("a time must be an ISO 8601 string")
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a time must carry a UTC offset, e.g. 2026-01-01T12:00:00Z")
    return value.astimezone(UTC)

"""The one clock. Services read time here so that tests of timers and anti-sniping can move it."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()

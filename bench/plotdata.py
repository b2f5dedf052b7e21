"""The `plots` key of a scenario's figures, which bench/plots.py draws from the results JSON:

    {"cdf": {"<series>": [ms, ... sorted, at most CDF_POINTS]},
     "timeline": {"<series>": [[seconds from the scenario's start, value], ...]}}
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

CDF_POINTS = 2000


def cdf(values: Iterable[float], limit: int = CDF_POINTS) -> list[float]:
    """The values sorted; above `limit`, evenly spaced quantiles that keep the minimum and the
    maximum, so the curve's ends are the real ones."""
    s = sorted(values)
    if len(s) <= limit:
        return [round(v, 3) for v in s]
    step = (len(s) - 1) / (limit - 1)
    return [round(s[round(i * step)], 3) for i in range(limit)]


def per_second(times: Iterable[float], t0: float) -> list[list[float]]:
    """How many of `times` fall in each whole second from t0, including the empty seconds in
    between (a timeline with holes would hide the stalls it is there to show)."""
    counts = Counter(math.floor(t - t0) for t in times)
    if not counts:
        return []
    return [[s, counts.get(s, 0)] for s in range(min(counts), max(counts) + 1)]


def counted_per_second(counts: dict[int, int], t0: float) -> list[list[float]]:
    """Counts already kept per whole epoch second ({second: n}) as [[seconds from t0 to that
    second's start, n], ...], every second from the first to the last, the empty ones as 0."""
    if not counts:
        return []
    return [[round(sec - t0, 3), counts.get(sec, 0)] for sec in range(min(counts), max(counts) + 1)]


def cumulative(times: Iterable[float], t0: float, step: float = 0.5) -> list[list[float]]:
    """How many of `times` have passed at t0 + k * step, up to the last one."""
    s = sorted(t - t0 for t in times)
    out: list[list[float]] = []
    i = 0
    k = 0
    while s and (not out or out[-1][1] < len(s)):
        t = round(k * step, 3)
        while i < len(s) and s[i] <= t:
            i += 1
        out.append([t, i])
        k += 1
    return out

"""Per-function arrival forecast: how many warm instances to have ready for the next interval.

Sans-I/O: fed arrivals and run times with `now`; `wanted(digest, now)` answers a count.

Arrivals are counted per interval of `interval_s`; at each interval boundary Holt's linear
exponential smoothing (level + trend; Holt 1957, the method the Sharer Cloud design's forecasting
called for) updates a forecast of the next interval's count. By Little's law the concurrency that
count needs is `rate x mean run time`; with `headroom` for bursts that is the number of instances
to keep warm, so a rising trend pre-warms instances *before* the burst reaches them. Idle intervals
decay the level towards zero, so a function that stops being called stops being pre-warmed.

It does not time single arrivals (the hybrid histogram's pre-warm window does, in `keepalive.py`)
and does not start anything (the pool policy does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from p2pfaas.errors import LocalError


@dataclass
class _Series:
    interval: int  # index of the interval being counted
    count: int = 0
    level: float = 0.0
    trend: float = 0.0
    mean_run_s: float = 0.0
    runs: int = 0


class ArrivalForecast:
    """Driven by the pool policy: `observe_arrival`, `observe_run`, then `wanted` when it plans."""

    def __init__(
        self,
        *,
        interval_s: float = 60.0,
        alpha: float = 0.5,
        beta: float = 0.3,
        headroom: float = 1.25,
        max_functions: int = 100_000,
    ) -> None:
        if interval_s <= 0 or not (0 < alpha <= 1 and 0 <= beta <= 1) or headroom < 1:
            raise LocalError("need interval_s > 0, 0 < alpha <= 1, 0 <= beta <= 1, headroom >= 1")
        self.interval_s = interval_s
        self.alpha = alpha
        self.beta = beta
        self.headroom = headroom
        self.max_functions = max_functions
        self._series: dict[str, _Series] = {}

    def _roll(self, digest: str, now: float) -> _Series:
        interval = int(now // self.interval_s)
        series = self._series.get(digest)
        if series is None:
            if len(self._series) >= self.max_functions:
                del self._series[next(iter(self._series))]
            series = self._series[digest] = _Series(interval)
            return series
        # Close every interval that has ended: the current count, then zeros for empty ones.
        steps = min(interval - series.interval, 64)  # after 64 empty intervals the level is ~0 anyway
        for step in range(steps):
            observed = series.count if step == 0 else 0
            previous = series.level
            series.level = self.alpha * observed + (1 - self.alpha) * (series.level + series.trend)
            series.trend = self.beta * (series.level - previous) + (1 - self.beta) * series.trend
        if steps:
            series.interval = interval
            series.count = 0
        return series

    def observe_arrival(self, digest: str, now: float) -> None:
        self._roll(digest, now).count += 1

    def observe_run(self, digest: str, run_s: float, now: float) -> None:
        """A finished invocation's time on its instance (exponentially averaged)."""
        series = self._roll(digest, now)
        series.runs += 1
        weight = max(1 / series.runs, 0.1)
        series.mean_run_s += weight * (max(run_s, 0.0) - series.mean_run_s)

    def forecast_count(self, digest: str, now: float) -> float:
        """Expected arrivals of `digest` in the interval starting after `now`'s."""
        series = self._series.get(digest)
        if series is None:
            return 0.0
        series = self._roll(digest, now)
        return max(series.level + series.trend, 0.0)

    def wanted(self, digest: str, now: float) -> int:
        """Instances to keep warm for the coming interval (0 for unknown or quiet functions)."""
        series = self._series.get(digest)
        if series is None or series.runs == 0:
            return 0
        rate_per_s = self.forecast_count(digest, now) / self.interval_s
        concurrency = rate_per_s * series.mean_run_s * self.headroom
        # Below a tenth of an instance the keep-alive policy decides alone.
        return math.ceil(concurrency) if concurrency >= 0.1 else 0

    def digests(self) -> list[str]:
        return list(self._series)

    def forget(self, digest: str) -> None:
        self._series.pop(digest, None)

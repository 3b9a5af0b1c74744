"""Per-peer rate limiting (sans-I/O): a token bucket per source endpoint, and a looser one per range.

Each request costs tokens (a Store costs more than a Ping); a peer whose bucket is empty has its datagrams
dropped and counted. Every endpoint (address and port) has its own budget, so fifty honest nodes behind
one home router, or in one office /24, are not throttled as one; their address range (/24, /48) shares a
budget `group_factor` times larger, so one operator with one block and many ports still gets only that.
The number of tracked buckets is bounded (the least recently seen is forgotten).
It does not decide what a request costs beyond the table below, and reads no clock: `now` is passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    rate_per_s: float = 100.0
    burst: float = 400.0
    max_tracked: int = 10_000
    group_factor: float = 16.0  # a range's budget, in endpoints' budgets


class RateLimiter:
    """Token buckets keyed by endpoint and by range. Driven by the protocol, once per incoming request."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        self._buckets: OrderedDict[str, tuple[float, float]] = (
            OrderedDict()
        )  # endpoint or range -> (tokens, stamp)

    def allow(self, source: str, now: float, cost: float = 1.0, *, group: str | None = None) -> bool:
        """Whether `source` may spend `cost` now; with `group`, that range's bucket must allow it too."""
        buckets = [(source, 1.0)] if group is None else [(source, 1.0), (group, self.limits.group_factor)]
        tokens = [self._refill(key, now, scale) for key, scale in buckets]
        allowed = all(t >= cost for t in tokens)
        for (key, _), left in zip(buckets, tokens, strict=True):
            self._keep(key, left - cost if allowed else left, now)
        return allowed

    def _refill(self, key: str, now: float, scale: float) -> float:
        rate, burst = self.limits.rate_per_s * scale, self.limits.burst * scale
        tokens, stamp = self._buckets.pop(key, (burst, now))
        return min(burst, tokens + (now - stamp) * rate)

    def _keep(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.limits.max_tracked:
            self._buckets.popitem(last=False)

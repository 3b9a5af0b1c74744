"""Per-peer rate limiting (sans-I/O): a token bucket per source address range.

Each request costs tokens (a Store costs more than a Ping); a peer whose bucket is empty has its datagrams
dropped and counted. Buckets are kept per /24 (IPv4) or /48 (IPv6), so one address block shares one
budget, and the number of tracked ranges is bounded (the least recently seen is forgotten).
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


class RateLimiter:
    """Token buckets keyed by address range. Driven by the protocol, once per incoming request."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # range -> (tokens, stamp)

    def allow(self, source: str, now: float, cost: float = 1.0) -> bool:
        tokens, stamp = self._buckets.pop(source, (self.limits.burst, now))
        tokens = min(self.limits.burst, tokens + (now - stamp) * self.limits.rate_per_s)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[source] = (tokens, now)
        while len(self._buckets) > self.limits.max_tracked:
            self._buckets.popitem(last=False)
        # A bucket that has refilled says nothing a fresh one would not: forget it (least recent first).
        for oldest, (left, when) in self._buckets.items():
            if left + (now - when) * self.limits.rate_per_s < self.limits.burst:
                break
            del self._buckets[oldest]
            break  # at most one per call keeps this O(1); idle ranges drain as traffic flows
        return allowed

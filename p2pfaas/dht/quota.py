"""Per-peer rate limiting (sans-I/O): a token bucket per source endpoint, and a looser one per range.

Each request costs tokens (a Store costs more than a Ping); a peer whose bucket is empty has its datagrams
dropped and counted. Every endpoint (address and port) has its own budget, so fifty honest nodes behind
one home router, or in one office /24, are not throttled as one; their address range (/24, /48) shares a
budget `group_factor` times larger, so one operator with one block and many ports still gets only that.
The number of tracked buckets is bounded (the least recently seen is forgotten); the buckets are
`p2pfaas.ratelimit`'s, as the anchor's are.
It does not decide what a request costs beyond the table below, and reads no clock: `now` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pfaas.ratelimit import TokenBuckets, take_all


@dataclass(frozen=True)
class RateLimits:
    rate_per_s: float = 100.0
    burst: float = 400.0
    max_tracked: int = 10_000  # endpoints tracked, and as many ranges
    group_factor: float = 16.0  # a range's budget, in endpoints' budgets


class RateLimiter:
    """Token buckets keyed by endpoint and by range. Driven by the protocol, once per incoming request."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits = limits or RateLimits()
        self._buckets = TokenBuckets(limits.burst, limits.rate_per_s, limits.max_tracked)  # per endpoint
        factor = limits.group_factor
        self._groups = TokenBuckets(limits.burst * factor, limits.rate_per_s * factor, limits.max_tracked)

    def allow(self, source: str, now: float, cost: float = 1.0, *, group: str | None = None) -> bool:
        """Whether `source` may spend `cost` now; with `group`, that range's bucket must allow it too."""
        if group is None:
            return self._buckets.take(source, now, cost)
        return take_all([(self._buckets, source), (self._groups, group)], now, cost)

"""Token buckets per key (sans-I/O): the one implementation behind every rate limit in the package.

A bucket holds up to `burst` tokens and refills at `per_s`; a request takes `cost` of them or is
refused. The anchor's node announcements (`anchor/app.py`) and the DHT's per-endpoint and per-range
datagram budgets (`dht/quota.py`) both use it. Only the least recently used `capacity` keys are kept
(cachetools' `LRUCache`), so a flood of made-up keys cannot grow memory without limit.

Not aiolimiter: its `AsyncLimiter` is one bucket that a caller waits on (`async with limiter`),
reading the running loop's clock. Here the question is an immediate yes or no (drop the datagram,
answer 429) for one of many keys, with `now` passed in so the simulator and property tests drive
it without a loop.
"""

from __future__ import annotations

from collections.abc import Iterable

from cachetools import LRUCache

__all__ = ["TokenBuckets", "take_all"]


class TokenBuckets:
    """A token bucket per key: `burst` at once, then `per_s`; least recently used keys forgotten."""

    def __init__(self, burst: float, per_s: float, capacity: int = 100_000) -> None:
        self.burst = burst
        self.per_s = per_s
        self._levels: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=capacity)  # (tokens, at)

    def __len__(self) -> int:
        return len(self._levels)

    def take(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Whether `key` may spend `cost` tokens now (and, if so, spend them)."""
        return take_all([(self, key)], now, cost)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._levels.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.per_s)


def take_all(buckets: Iterable[tuple[TokenBuckets, str]], now: float, cost: float = 1.0) -> bool:
    """Spend `cost` from every (buckets, key) named, or from none of them unless all have it."""
    levels = [(bucket, key, bucket._level(key, now)) for bucket, key in buckets]
    allowed = all(level >= cost for _, _, level in levels)
    for bucket, key, level in levels:
        bucket._levels[key] = (level - cost if allowed else level, now)
    return allowed

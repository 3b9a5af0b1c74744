"""Per-range token buckets: a burst, then the sustained rate; ranges are independent and bounded."""

from __future__ import annotations

from p2pfaas.dht.quota import RateLimiter, RateLimits


def test_a_range_gets_its_burst_then_its_rate() -> None:
    limiter = RateLimiter(RateLimits(rate_per_s=10.0, burst=20.0))
    assert sum(limiter.allow("a", 0.0) for _ in range(50)) == 20
    assert sum(limiter.allow("a", 1.0) for _ in range(50)) == 10  # one second refills ten tokens
    assert limiter.allow("b", 1.0)  # another range has its own bucket
    assert not limiter.allow("a", 1.0, cost=4.0)


def test_the_number_of_tracked_ranges_is_bounded() -> None:
    limiter = RateLimiter(RateLimits(max_tracked=100))
    for i in range(1000):
        limiter.allow(str(i), 0.0)
    assert len(limiter._buckets) == 100

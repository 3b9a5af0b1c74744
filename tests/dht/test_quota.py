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


def test_endpoints_of_one_range_each_have_a_budget_and_the_range_a_bigger_shared_one() -> None:
    """Issue #12: forty honest nodes behind one home router (one address, forty ports) are not
    throttled as one; an operator with one block and a hundred ports gets `group_factor` budgets."""
    limiter = RateLimiter(RateLimits(rate_per_s=10.0, burst=20.0, group_factor=16.0))
    behind_one_nat = [f"203.0.113.11:{port}" for port in range(40000, 40040)]
    allowed = [sum(limiter.allow(e, 0.0, group="203.0.113.0/24") for _ in range(5)) for e in behind_one_nat]
    assert allowed == [5] * 40  # 200 requests at once: each endpoint well within its own burst
    sybil = [f"198.51.100.7:{port}" for port in range(1, 101)]
    spent = sum(limiter.allow(e, 0.0, group="198.51.100.0/24") for e in sybil for _ in range(20))
    assert spent == 16 * 20  # the range's burst, not 100 endpoints' bursts
    assert sum(limiter.allow(e, 1.0, group="198.51.100.0/24") for e in sybil for _ in range(20)) == 16 * 10

"""Token buckets per key: a burst, then the rate; all-or-nothing across buckets; bounded keys."""

from __future__ import annotations

from p2pfaas.ratelimit import TokenBuckets, take_all


def test_a_key_gets_its_burst_then_its_rate_and_other_keys_their_own() -> None:
    buckets = TokenBuckets(burst=5, per_s=0.5)
    assert [buckets.take("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert buckets.take("b", 0.0)
    assert not buckets.take("a", 1.0)  # half a token back
    assert buckets.take("a", 2.0)
    assert not buckets.take("a", 100.0, cost=6.0)  # never more than the burst
    assert buckets.take("a", 100.0, cost=5.0)


def test_take_all_spends_from_every_bucket_or_from_none() -> None:
    small, large = TokenBuckets(burst=2, per_s=0.0), TokenBuckets(burst=3, per_s=0.0)
    assert take_all([(small, "x"), (large, "g")], 0.0)
    assert take_all([(small, "y"), (large, "g")], 0.0)
    assert take_all([(small, "z"), (large, "g")], 0.0)
    assert not take_all([(small, "w"), (large, "g")], 0.0)  # the shared bucket is empty
    assert small.take("w", 0.0, cost=2.0)  # and the refusal spent nothing of w's


def test_least_recently_used_keys_are_forgotten() -> None:
    buckets = TokenBuckets(burst=1, per_s=0.0, capacity=2)
    assert buckets.take("old", 0.0)
    assert buckets.take("kept", 0.0)
    assert not buckets.take("old", 0.0)  # used again: now the most recent
    assert buckets.take("new", 0.0)  # forgets "kept"
    assert len(buckets) == 2
    assert buckets.take("kept", 0.0)  # a fresh bucket

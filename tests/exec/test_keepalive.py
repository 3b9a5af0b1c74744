"""The keep-alive policies alone: the hybrid histogram's windows and its fixed fallback."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas.errors import LocalError
from p2pfaas.exec.keepalive import FixedKeepAlive, HybridHistogramPolicy, Windows


def test_fixed_keep_alive_never_prewarms() -> None:
    policy = FixedKeepAlive(600)
    policy.observe_idle("f", 30)
    assert policy.windows("f") == Windows(0.0, 600, learned=False)
    with pytest.raises(LocalError):
        FixedKeepAlive(-1)


def test_falls_back_until_enough_idle_times() -> None:
    policy = HybridHistogramPolicy(fallback_keep_alive_s=600, min_samples=10)
    assert policy.windows("f") == Windows(0.0, 600, learned=False)
    for _ in range(9):
        policy.observe_idle("f", 1800)
    assert not policy.windows("f").learned
    policy.observe_idle("f", 1800)
    assert policy.windows("f").learned


def test_a_periodic_function_is_unloaded_and_prewarmed_just_before_its_period() -> None:
    policy = HybridHistogramPolicy(fallback_keep_alive_s=600, bin_s=60)
    for _ in range(20):
        policy.observe_idle("f", 30 * 60 + 5)  # a 30-minute timer
    windows = policy.windows("f")
    # Head: the 30th one-minute bin's lower edge minus 10%; tail: its upper edge plus 10%.
    assert windows.learned
    assert windows.prewarm_s == pytest.approx(30 * 60 * 0.9)
    assert windows.prewarm_s + windows.keep_alive_s == pytest.approx(31 * 60 * 1.1)
    assert windows.prewarm_s < 30 * 60 + 5 < windows.prewarm_s + windows.keep_alive_s
    # Fixed 10 minutes would keep it warm 10 minutes after every call and still start it cold.
    assert windows.prewarm_s + windows.keep_alive_s > 30 * 60 + 5 > 600


def test_a_hot_function_gets_a_short_tail_and_no_prewarm() -> None:
    policy = HybridHistogramPolicy(fallback_keep_alive_s=600, bin_s=60)
    rng = random.Random(3)
    for _ in range(500):
        policy.observe_idle("f", rng.uniform(0, 50))  # always back within a minute
    windows = policy.windows("f")
    assert windows.learned and windows.prewarm_s == 0
    assert windows.keep_alive_s == pytest.approx(66)  # one bin plus 10%, well under 10 minutes


def test_spread_out_idle_times_are_no_pattern_and_fall_back() -> None:
    policy = HybridHistogramPolicy(fallback_keep_alive_s=600, bin_s=60, range_s=4 * 3600)
    rng = random.Random(4)
    for _ in range(2000):
        policy.observe_idle("f", rng.uniform(0, 4 * 3600))  # uniform: coefficient of variation ~0
    assert policy.windows("f") == Windows(0.0, 600, learned=False)


def test_mostly_out_of_range_falls_back() -> None:
    policy = HybridHistogramPolicy(fallback_keep_alive_s=600, range_s=4 * 3600)
    for index in range(40):
        policy.observe_idle("f", 6 * 3600 if index % 3 else 120)  # two in three beyond four hours
    assert not policy.windows("f").learned


def test_functions_are_independent_and_forgettable() -> None:
    policy = HybridHistogramPolicy(fallback_keep_alive_s=600, max_functions=2)
    for _ in range(20):
        policy.observe_idle("a", 1800)
        policy.observe_idle("b", 30)
    assert policy.windows("a").prewarm_s > 0 and policy.windows("b").prewarm_s == 0
    policy.forget("a")
    assert not policy.windows("a").learned
    for _ in range(20):
        policy.observe_idle("c", 1800)
    policy.observe_idle("d", 1800)  # a fourth function: the oldest histogram goes, memory stays bounded
    assert not policy.windows("b").learned and policy.windows("c").learned


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(LocalError):
        HybridHistogramPolicy(bin_s=0)
    with pytest.raises(LocalError):
        HybridHistogramPolicy(head_percentile=99, tail_percentile=5)
    with pytest.raises(LocalError):
        HybridHistogramPolicy(bin_s=60, range_s=30)


@settings(deadline=None)
@given(st.lists(st.floats(min_value=-10, max_value=30_000, allow_nan=False), min_size=1, max_size=300))
def test_windows_are_always_well_formed(idle_times: list[float]) -> None:
    policy = HybridHistogramPolicy(fallback_keep_alive_s=600, min_samples=5)
    for idle_s in idle_times:
        policy.observe_idle("f", idle_s)
        windows = policy.windows("f")
        assert windows.prewarm_s >= 0 and windows.keep_alive_s > 0
        if not windows.learned:
            assert windows == Windows(0.0, 600, learned=False)
        else:  # the window covers the tail percentile's bin: it ends past the head's start
            assert windows.prewarm_s + windows.keep_alive_s <= policy.n_bins * policy.bin_s * 1.1 + 1e-6


def test_the_memory_budget_caps_a_long_tail_at_the_fixed_keep_alives_cost() -> None:
    paper = HybridHistogramPolicy(fallback_keep_alive_s=600)
    budgeted = HybridHistogramPolicy(fallback_keep_alive_s=600, memory_budget=True)
    rng = random.Random(5)
    for k in range(400):  # bursts: nine calls in ten come within 30 s, the tenth after three hours
        idle_s = 3 * 3600 + rng.uniform(0, 600) if k % 10 == 9 else rng.uniform(0, 30)
        paper.observe_idle("f", idle_s)
        budgeted.observe_idle("f", idle_s)
    assert paper.windows("f").keep_alive_s > 3 * 3600  # the paper keeps it warm three hours each time
    windows = budgeted.windows("f")
    assert windows.learned and windows.prewarm_s == 0
    # At most what fixed 10 minutes costs: 0.9 x ~15 s + 0.1 x 600 s idle per idle time.
    assert 60 <= windows.keep_alive_s <= 600


def test_the_memory_budget_leaves_cheap_windows_alone() -> None:
    paper = HybridHistogramPolicy(fallback_keep_alive_s=600)
    budgeted = HybridHistogramPolicy(fallback_keep_alive_s=600, memory_budget=True)
    for _ in range(30):
        paper.observe_idle("f", 1805)  # a 30-minute timer: pre-warmed just before, kept briefly
        budgeted.observe_idle("f", 1805)
    assert budgeted.windows("f") == paper.windows("f")

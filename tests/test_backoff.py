"""Capped exponential backoff: doubling to the cap, and equal jitter drawn only from the given rng."""

from __future__ import annotations

import random

import pytest

from p2pfaas.backoff import Backoff


def test_without_an_rng_the_pause_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=3.0)
    assert [backoff.pause_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert Backoff(base_s=0.5).pause_s(10) == 256.0  # no cap by default


def test_with_an_rng_the_pause_is_between_half_the_ceiling_and_the_ceiling() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0)
    rng = random.Random(7)
    for failures in range(1, 20):
        ceiling = min(1.0, 0.1 * 2 ** (failures - 1))
        assert ceiling / 2 <= backoff.pause_s(failures, rng) <= ceiling


def test_the_same_seed_gives_the_same_pauses() -> None:
    backoff = Backoff(base_s=0.1, cap_s=5.0)
    first, second = random.Random(3), random.Random(3)
    pauses = [backoff.pause_s(n, first) for n in range(1, 9)]
    assert pauses == [backoff.pause_s(n, second) for n in range(1, 9)]


def test_a_base_above_the_cap_is_a_mistake() -> None:
    with pytest.raises(AssertionError):
        Backoff(base_s=2.0, cap_s=1.0)

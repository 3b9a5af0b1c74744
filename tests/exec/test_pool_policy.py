"""The sans-I/O warm-pool policy, driven directly with `now`."""

from __future__ import annotations

import pytest

from p2pfaas.errors import LocalError
from p2pfaas.exec.pool_policy import Decision, InstanceState, WarmPoolPolicy


def test_starts_up_to_the_cap_then_waits() -> None:
    policy = WarmPoolPolicy(max_per_function=2, keep_alive_s=10)
    assert policy.acquire("f", 0, new_id="a").decision is Decision.START
    assert policy.acquire("f", 0, new_id="b").decision is Decision.START
    assert policy.acquire("f", 0, new_id="c").decision is Decision.WAIT
    assert policy.acquire("g", 0, new_id="c").decision is Decision.START  # the cap is per function
    policy.release("a", 1)
    acquired = policy.acquire("f", 1, new_id="d")
    assert (acquired.decision, acquired.instance_id) == (Decision.REUSE, "a")
    assert policy.state("a") is InstanceState.BUSY


def test_reuses_the_most_recently_released() -> None:
    policy = WarmPoolPolicy(max_per_function=3, keep_alive_s=10)
    for name in "abc":
        policy.acquire("f", 0, new_id=name)
    for now, name in enumerate("bac"):
        policy.release(name, now)
    acquired = policy.acquire("f", 5, new_id="x")
    assert (acquired.decision, acquired.instance_id) == (Decision.REUSE, "c")


def test_expiry_forgets_only_idle_instances_past_keep_alive() -> None:
    policy = WarmPoolPolicy(max_per_function=3, keep_alive_s=10)
    for name in "abc":
        policy.acquire("f", 0, new_id=name)
    policy.release("a", 0)
    policy.release("b", 5)
    assert policy.expired(9) == []
    assert policy.expired(10) == ["a"]
    assert policy.expired(100) == ["b"]  # "c" is busy: never expired
    assert policy.count("f") == 1 and policy.state("a") is None


def test_discard_frees_the_slot() -> None:
    policy = WarmPoolPolicy(max_per_function=1, keep_alive_s=10)
    policy.acquire("f", 0, new_id="a")
    assert policy.discard("a") == "f"
    assert policy.count("f") == 0
    assert policy.acquire("f", 0, new_id="b").decision is Decision.START


def test_illegal_transitions_raise() -> None:
    policy = WarmPoolPolicy(max_per_function=1, keep_alive_s=10)
    policy.acquire("f", 0, new_id="a")
    policy.release("a", 0)
    with pytest.raises(LocalError):
        policy.release("a", 0)
    with pytest.raises(LocalError):
        policy.discard("a")  # idle instances leave through expiry
    with pytest.raises(LocalError):
        policy.release("nope", 0)
    with pytest.raises(LocalError):
        WarmPoolPolicy(max_per_function=0, keep_alive_s=1)

"""The sans-I/O warm-pool policy, driven directly with `now`."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas.errors import LocalError
from p2pfaas.exec.forecast import ArrivalForecast
from p2pfaas.exec.keepalive import FixedKeepAlive, HybridHistogramPolicy
from p2pfaas.exec.pool_policy import Acquired, Decision, WarmPoolPolicy
from p2pfaas.exec.pool_table import InstanceState


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


def test_stale_expiry_entries_do_not_pile_up_under_steady_load() -> None:
    """Each release schedules an expiry and the next reuse makes it stale; a busy function must
    not grow the schedule by one entry per invocation for a whole keep-alive."""
    policy = WarmPoolPolicy(max_per_function=4, keep_alive_s=600)
    for i in range(10_000):
        now = i / 1000
        acquired = policy.acquire("f", now, new_id=f"i{i}")
        policy.release(acquired.instance_id, now)
    assert policy.count("f") == 1
    assert len(policy._expiries) <= 2 * policy.total_count() + 65
    assert policy.expired(599) == [] and policy.expired(611) == [acquired.instance_id]


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


# --- learned keep-alive, forecast pre-warming, concurrency, memory cap ----------------------------


def run_once(policy: WarmPoolPolicy, digest: str, at: float, run_s: float, new_id: str) -> Decision:
    """One invocation from `at` to `at + run_s`, after letting the policy's timers fire up to `at`."""
    tick(policy, at)
    acquired = policy.acquire(digest, at, new_id=new_id, memory_mb=128)
    assert acquired.decision is not Decision.WAIT
    policy.release(acquired.instance_id, at + run_s)
    return acquired.decision


_ids = itertools.count()


def tick(policy: WarmPoolPolicy, until: float) -> list[str]:
    """Fire every timer due up to `until`, booting pre-warms at once; the log of what happened."""
    log: list[str] = []
    while policy.next_deadline() <= until:
        now = policy.next_deadline()
        log += [f"{now:g} expire {i}" for i in policy.expired(now)]
        for digest, instance_id in policy.prewarm(now, lambda: f"p{next(_ids)}"):
            log.append(f"{now:g} prewarm {digest}")
            policy.booted(instance_id, now)
    return log


class Driver:
    """Runs invocations on the policy in time order: each holds its instance for its run time."""

    def __init__(self, policy: WarmPoolPolicy) -> None:
        self.policy = policy
        self.running: list[tuple[float, str]] = []
        self.log: list[str] = []
        self.decisions: list[Decision] = []
        self.n = 0

    def advance(self, until: float) -> None:
        for end, instance_id in sorted(self.running):
            if end > until:
                break
            self.log += tick(self.policy, end)
            if self.policy.state(instance_id) is not None:  # not discarded meanwhile
                self.policy.release(instance_id, end)
        self.running = [(e, i) for e, i in self.running if e > until]
        self.log += tick(self.policy, until)

    def call(self, digest: str, at: float, run_s: float, *, concurrency: int = 1) -> Decision:
        self.advance(at)
        self.n += 1
        acquired = self.policy.acquire(
            digest, at, new_id=f"i{self.n}", memory_mb=256, concurrency=concurrency
        )
        for evicted in acquired.evict:
            assert self.policy.state(evicted) is None
        if acquired.decision is not Decision.WAIT:
            self.running.append((at + run_s, acquired.instance_id))
        self.decisions.append(acquired.decision)
        return acquired.decision


def test_scales_to_zero_after_the_fixed_keep_alive() -> None:
    policy = WarmPoolPolicy(max_per_function=4, keep_alive=FixedKeepAlive(600))
    assert run_once(policy, "f", 0, 1, "a") is Decision.START
    assert run_once(policy, "f", 300, 1, "b") is Decision.REUSE
    assert tick(policy, 900) == []
    assert tick(policy, 901) == ["901 expire a"]
    assert policy.count("f") == 0 and policy.total_count() == 0 and policy.memory_used_mb == 0


def test_learned_windows_unload_at_once_and_prewarm_before_the_next_call() -> None:
    keep_alive = HybridHistogramPolicy(fallback_keep_alive_s=600, bin_s=60)
    policy = WarmPoolPolicy(max_per_function=4, keep_alive=keep_alive)
    period_s = 1800.0  # a 30-minute timer: fixed 10 minutes would start it cold every time
    decisions = [run_once(policy, "f", k * period_s, 2, f"i{k}") for k in range(12)]
    assert decisions[:10] == [Decision.START] * 10  # learning; the fallback keeps 10 minutes
    assert decisions[11] is Decision.REUSE  # warm: pre-warmed before the call
    windows = keep_alive.windows("f")
    assert windows.learned and 0 < windows.prewarm_s < period_s
    # Right after a call ends the instance goes, and comes back just before the next one.
    end = 11 * period_s + 2
    log = tick(policy, 12 * period_s - 1)
    assert [line.split()[:2] for line in log] == [
        [f"{end:g}", "expire"],
        [f"{end + windows.prewarm_s:g}", "prewarm"],
    ]
    assert run_once(policy, "f", 12 * period_s, 2, "x") is Decision.REUSE


def test_an_early_arrival_cancels_the_pending_prewarm() -> None:
    keep_alive = HybridHistogramPolicy(fallback_keep_alive_s=600, bin_s=60)
    policy = WarmPoolPolicy(max_per_function=4, keep_alive=keep_alive)
    for k in range(12):
        run_once(policy, "f", k * 1800.0, 2, f"i{k}")
    planned = 11 * 1800.0 + 2 + keep_alive.windows("f").prewarm_s
    assert run_once(policy, "f", 11 * 1800.0 + 100, 2, "early") is Decision.START
    assert not any(line.startswith(f"{planned:g} ") for line in tick(policy, planned + 1))


def test_forecast_prewarms_instances_before_a_predicted_burst() -> None:
    forecast = ArrivalForecast(interval_s=60, headroom=1.0)
    policy = WarmPoolPolicy(max_per_function=50, keep_alive=FixedKeepAlive(600), forecast=forecast)
    driver = Driver(policy)
    for minute in range(6):  # a ramp: 10, 20, ... 60 calls a minute, each running 6 s
        calls = 10 * (minute + 1)
        for k in range(calls):
            driver.call("f", minute * 60 + k * 60 / calls, 6.0)
    driver.advance(359.9)
    before, last_minute_concurrency = policy.count("f"), 60 / 60 * 6
    driver.log.clear()
    driver.advance(360)  # the boundary: the forecast expects more calls than the last minute had
    prewarmed = sum("prewarm" in line for line in driver.log)
    assert prewarmed == policy.count("f") - before > 0
    assert policy.count("f") > last_minute_concurrency
    # The burst then finds them warm: the next minute's calls start nothing new.
    driver.decisions.clear()
    for k in range(70):
        driver.call("f", 360 + k * 60 / 70, 6.0)
    assert Decision.START not in driver.decisions


def test_an_arrival_during_a_prewarm_boot_waits_for_it_instead_of_starting_another() -> None:
    policy = WarmPoolPolicy(max_per_function=4, keep_alive_s=600)
    [booting] = policy.prewarm_now("f", 1, 0.0, lambda: "p", memory_mb=128)
    assert policy.acquire("f", 0.1, new_id="x") == Acquired(Decision.REUSE, booting)
    policy.booted(booting, 0.5)  # up: the claiming invocation runs on it...
    assert policy.state(booting) is InstanceState.BUSY
    policy.release(booting, 1.0)  # ...and then it idles like any other
    assert policy.state(booting) is InstanceState.IDLE and policy.count("f") == 1
    with pytest.raises(LocalError):
        policy.booted(booting, 2.0)  # booted twice
    with pytest.raises(LocalError):
        policy.release(booting, 2.0)  # nothing runs on it


def test_forecast_keeps_instances_it_still_wants() -> None:
    forecast = ArrivalForecast(interval_s=60, headroom=1.0)
    policy = WarmPoolPolicy(max_per_function=10, keep_alive=FixedKeepAlive(30), forecast=forecast)
    driver = Driver(policy)
    for k in range(600):  # a call every second for ten minutes, each running 2.5 s: 3 busy
        driver.call("f", float(k), 2.5)
    assert policy.count("f") >= 3
    driver.advance(640)  # past the 30 s keep-alive, but the forecast still expects calls
    assert policy.count("f") >= 2
    driver.advance(3600)  # an hour of silence: the forecast decays and the pool shrinks to zero
    assert policy.count("f") == 0


def test_several_invocations_share_an_instance_up_to_its_concurrency() -> None:
    policy = WarmPoolPolicy(max_per_function=2, keep_alive_s=10)
    first = policy.acquire("f", 0, new_id="a", concurrency=3)
    assert first.decision is Decision.START
    # Packed onto the booting instance: the caller waits for it to be up.
    assert policy.acquire("f", 0, new_id="x", concurrency=3) == Acquired(Decision.REUSE, "a")
    assert policy.acquire("f", 0, new_id="x", concurrency=3) == Acquired(Decision.REUSE, "a")
    assert policy.acquire("f", 0, new_id="b", concurrency=3) == Acquired(Decision.START, "b")
    policy.release("a", 1)  # "a" has a free slot again and is preferred to a new instance
    assert policy.acquire("f", 1, new_id="x", concurrency=3) == Acquired(Decision.REUSE, "a")
    for _ in range(3):
        policy.release("a", 2)
    assert policy.state("a") is InstanceState.IDLE and policy.state("b") is InstanceState.BUSY
    with pytest.raises(LocalError):
        policy.release("a", 3)
    policy.release("b", 3)
    assert policy.expired(12) == ["a"] and policy.expired(13) == ["b"]
    with pytest.raises(LocalError):
        policy.acquire("f", 0, new_id="c", concurrency=0)


def test_discarding_a_shared_instance_drops_all_its_invocations() -> None:
    policy = WarmPoolPolicy(max_per_function=1, keep_alive_s=10)
    policy.acquire("f", 0, new_id="a", concurrency=2)
    policy.acquire("f", 0, new_id="x", concurrency=2)
    assert policy.discard("a", 1) == "f"
    assert policy.count("f") == 0
    with pytest.raises(LocalError):
        policy.release("a", 1)  # the pool must not release invocations of a discarded instance
    assert policy.acquire("f", 2, new_id="b", concurrency=2).decision is Decision.START


def test_memory_cap_evicts_idle_instances_of_other_functions_first_to_expire() -> None:
    policy = WarmPoolPolicy(max_per_function=4, keep_alive_s=100, memory_cap_mb=256)
    for at, (digest, name) in enumerate([("f", "a"), ("g", "b")]):
        policy.acquire(digest, at, new_id=name, memory_mb=128)
        policy.release(name, at)
    started = policy.acquire("h", 5, new_id="c", memory_mb=128)
    assert started == Acquired(Decision.START, "c", evict=("a",))  # "a" expires soonest
    assert policy.memory_used_mb == 256
    assert policy.acquire("h", 6, new_id="d", memory_mb=128).evict == ("b",)
    assert policy.acquire("h", 7, new_id="e", memory_mb=128).decision is Decision.WAIT
    assert policy.acquire("h", 7, new_id="e", memory_mb=512).decision is Decision.WAIT


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("fgh"), st.floats(0, 3000), st.floats(0.01, 50)),
        min_size=1,
        max_size=60,
    )
)
def test_invariants_hold_under_random_traffic(calls: list[tuple[str, float, float]]) -> None:
    policy = WarmPoolPolicy(
        max_per_function=3,
        keep_alive=HybridHistogramPolicy(fallback_keep_alive_s=300, min_samples=3, bin_s=30, range_s=900),
        forecast=ArrivalForecast(interval_s=60),
        memory_cap_mb=1024,
    )
    driver = Driver(policy)
    concurrency = {"f": 1, "g": 2, "h": 3}
    for digest, at, run_s in sorted(calls, key=lambda c: c[1]):
        driver.call(digest, at, run_s, concurrency=concurrency[digest])
        assert policy.memory_used_mb == 256 * policy.total_count() <= 1024
        assert all(policy.count(d) <= 3 for d in "fgh")
    driver.advance(20_000)
    assert policy.total_count() == 0  # everything shrinks to zero once calls stop

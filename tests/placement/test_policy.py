"""Placement policies as cores: fed a local state and candidates, they return decisions."""

from __future__ import annotations

import random

import pytest

from p2pfaas.placement.policy import (
    Gossip,
    Kind,
    LocalOnly,
    LocalState,
    Nearest,
    PowerOfD,
    ProbeAnswer,
    RandomForward,
    ThresholdProbe,
    make_policy,
)
from p2pfaas.placement.view import Candidate

FREE = LocalState(capacity=2, busy=1, queued=0)
FULL = LocalState(capacity=2, busy=2, queued=3)


def _cand(name: str, *, free: float, rtt: float = 0.01, warm: int = 0, queue: float = 0.0) -> Candidate:
    return Candidate(name, f"http://{name}", 4, free, queue, rtt, warm, 0.5)



def test_every_policy_runs_locally_while_a_slot_is_free_and_never_looks_at_the_view() -> None:
    def boom() -> list[Candidate]:
        raise AssertionError("the view was consulted")

    for name in ("local-only", "random", "nearest", "power-of-2", "threshold-probe", "ours"):
        assert make_policy(name).decide(FREE, boom, random.Random(1)).kind is Kind.LOCAL


def test_unknown_policy_names_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown placement policy 'jsq'"):
        make_policy("jsq")


def test_local_only_and_no_peers_keep_it_here() -> None:
    assert LocalOnly().decide(FULL, lambda: [_cand("a", free=4)], random.Random(1)).kind is Kind.LOCAL
    for policy in (RandomForward(), Nearest(), PowerOfD(), ThresholdProbe(), Gossip()):
        assert policy.decide(FULL, lambda: [], random.Random(1)).kind is Kind.LOCAL


def test_nearest_picks_the_smallest_rtt() -> None:
    peers = [_cand("far", free=4, rtt=0.09), _cand("near", free=0, rtt=0.01)]
    decision = Nearest().decide(FULL, lambda: peers, random.Random(1))
    assert decision.kind is Kind.FORWARD and decision.targets == ("near",)


def test_power_of_d_probes_d_peers_then_takes_the_least_loaded_per_slot() -> None:
    peers = [_cand(n, free=1) for n in "abcdef"]
    policy = PowerOfD(d=2)
    decision = policy.decide(FULL, lambda: peers, random.Random(3))
    assert decision.kind is Kind.PROBE and len(set(decision.targets)) == 2 and not decision.sequential
    answers = [ProbeAnswer("a", 4, 6, 0.01), ProbeAnswer("b", 8, 4, 0.02)]
    after = policy.after_probe(FULL, answers, random.Random(1))
    assert after.kind is Kind.FORWARD and after.targets == ("b",)
    # Everybody busier than us per slot: keep it.
    assert policy.after_probe(FULL, [ProbeAnswer("a", 1, 9, 0.01)], random.Random(1)).kind is Kind.LOCAL


def test_threshold_probe_is_sequential_and_accepts_the_first_peer_below_the_threshold() -> None:
    policy = ThresholdProbe(threshold=1.0, probes=3)
    decision = policy.decide(FULL, lambda: [_cand(n, free=0) for n in "abcd"], random.Random(1))
    assert decision.kind is Kind.PROBE and decision.sequential and len(decision.targets) == 3
    assert not policy.acceptable(ProbeAnswer("a", 2, 2, 0.01))
    assert policy.acceptable(ProbeAnswer("b", 2, 1, 0.01))
    answers = [ProbeAnswer("a", 2, 2, 0.01), ProbeAnswer("b", 2, 1, 0.01)]
    assert policy.after_probe(FULL, answers, random.Random(1)).targets == ("b",)
    assert policy.after_probe(FULL, answers[:1], random.Random(1)).kind is Kind.LOCAL


def test_ours_forwards_conditionally_to_roomy_peers_preferring_near_and_warm() -> None:
    policy = Gossip(d=3, tries=2, cold_start_s=0.25)
    peers = [
        _cand("cold-near", free=2, rtt=0.01),
        _cand("warm-far", free=2, rtt=0.08, warm=1),
        _cand("full", free=0),
    ]
    decision = policy.decide(FULL, lambda: peers, random.Random(1))
    assert decision.kind is Kind.FORWARD and decision.conditional
    assert decision.targets == ("warm-far", "cold-near")  # 0.08 s RTT beats a 0.25 s cold start


def test_ours_draws_roomy_peers_in_proportion_to_their_free_slots() -> None:
    policy = Gossip(d=1, tries=1)
    peers = [_cand("big", free=9.0), _cand("small", free=1.0)]
    rng = random.Random(7)
    picks = [policy.decide(FULL, lambda: peers, rng).targets[0] for _ in range(2000)]
    assert 0.85 < picks.count("big") / len(picks) < 0.95


def test_ours_with_no_roomy_peer_forwards_only_when_that_beats_the_local_queue() -> None:
    policy = Gossip(mean_service_s=0.5)
    busy = [_cand("q", free=0, queue=0.0)]
    # Here: 3 queued on 2 slots; there: a full node with nothing queued.
    decision = policy.decide(FULL, lambda: busy, random.Random(1))
    assert decision.kind is Kind.FORWARD and not decision.conditional
    lightly = LocalState(capacity=2, busy=2, queued=0)
    assert (
        policy.decide(lightly, lambda: [_cand("q", free=0, queue=8.0)], random.Random(1)).kind is Kind.LOCAL
    )


def test_a_draining_node_never_keeps_work_when_someone_can_take_it() -> None:
    draining = LocalState(capacity=4, busy=0, queued=0, draining=True)
    peers = [_cand("a", free=0, queue=5.0), _cand("b", free=0, queue=1.0)]
    decision = Gossip().decide(draining, lambda: peers, random.Random(1))
    assert decision.kind is Kind.FORWARD and decision.targets == ("b",)
    assert RandomForward().decide(draining, lambda: peers, random.Random(1)).kind is Kind.FORWARD

"""The event-heap simulator at small scale: deterministic, conserving, and ours near the oracle.

Big-N figures (200 nodes) are in bench/bench_placement.py; these runs use 40 nodes for speed.
"""

from __future__ import annotations

import dataclasses

from p2pfaas.placement.fastsim import JSQOracle, SimConfig, simulate
from p2pfaas.placement.policy import make_policy

SMALL = SimConfig(nodes=40, duration_s=12.0, warmup_s=3.0, load=0.9, seed=5)


def test_same_seed_same_outcome_and_every_invocation_completes() -> None:
    a = simulate(SMALL, make_policy("ours"))
    b = simulate(SMALL, make_policy("ours"))
    assert a.response_s == b.response_s and a.probes == b.probes
    assert a.invocations > 1000 and a.lost == 0 and a.executions == a.invocations
    assert a.duplicate_executions == 0 and a.receipts_refused == 0


def test_ours_is_within_reach_of_the_oracle_and_far_better_than_random() -> None:
    oracle = simulate(SMALL, JSQOracle())
    ours = simulate(SMALL, make_policy("ours"))
    rand = simulate(SMALL, make_policy("random"))
    assert oracle.probes == 0
    assert ours.quantile(0.99) < 1.5 * oracle.quantile(0.99)
    assert rand.quantile(0.99) > 2 * ours.quantile(0.99)
    assert ours.per_invocation(ours.probes) < 1.0


def test_probing_policies_count_their_probes() -> None:
    p2 = simulate(SMALL, make_policy("power-of-2"))
    local = simulate(SMALL, make_policy("local-only"))
    assert p2.probes > 0 and p2.forwards > 0
    assert local.probes == 0 and local.forwards == 0


def test_killing_and_draining_nodes_mid_run_loses_nothing_and_charges_once() -> None:
    config = dataclasses.replace(
        SMALL, load=0.5, fault_at_s=6.0, kill_fraction=0.3, drain_fraction=0.1, duration_s=12.0
    )
    for name in ("ours", "power-of-2"):
        result = simulate(config, make_policy(name))
        assert result.killed == 12 and result.drained == 4
        assert result.lost == 0, f"{name}: {result.lost} accepted invocations lost"
        assert result.client_retries > 0  # crashes did hit invocations in progress
        assert result.drained_in_time == result.drained  # drained nodes left once their work was done
        # Any id that ran twice (its entry node died while a peer ran it) was settled once.
        assert result.receipts_refused == result.duplicate_executions

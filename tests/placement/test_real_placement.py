"""Placement quality on the real node code, small: ours against the JSQ oracle in virtual time.

The full proof is bench/bench_placement_real.py at 200 nodes (docs/benchmarks.md); this runs the same
scenario at 30 nodes so that a change to the router, gossip or policy that makes placement worse
fails here. Virtual time only (the simulator's jumping clock): no wall-clock limit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.bench_placement_real import ORACLE, _scenario
from p2pfaas import sim


def _run(policy: str, root: Path) -> dict[str, float]:
    async def main(net: sim.InMemoryNetwork) -> dict[str, float]:
        return await _scenario(
            net, root, nodes=30, duration_s=6.0, load=0.9, policy=policy, seed=1, sizes=(1, 2, 4, 8, 16)
        )

    return sim.run(main, seed=1)


def test_ours_keeps_p99_within_1_3x_of_the_oracle_with_about_one_extra_message(tmp_path: Path) -> None:
    results = {}
    for policy in (ORACLE, "ours"):
        with tempfile.TemporaryDirectory(dir=tmp_path) as root:
            results[policy] = _run(policy, Path(root))
    oracle, ours = results[ORACLE], results["ours"]
    assert oracle["invocations"] == ours["invocations"] > 1000  # the same arrivals
    assert ours["p99"] <= 1.3 * oracle["p99"], (ours, oracle)
    assert ours["refused"] + ours["probes"] + ours["pushes"] <= 1.5, ours

"""Placement policies compared on the event-heap simulator (the sans-I/O cores, 200 nodes).

Nodes of 1, 2, 4, 8 or 16 slots; Poisson arrivals at `--load` of the total capacity, each at a
uniformly random entry node; exponential run times; gossip every 2 s with 2 neighbours, so views
are seconds old. Each policy runs on the same seed beside a join-the-shortest-queue oracle that sees
every queue exactly. Then a fault run: 30% of nodes killed and 10% drained mid-run.
Prints tables; asserts nothing.

Run: .venv/bin/python bench/bench_placement.py [--nodes 200] [--duration 40] [--seed 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from p2pfaas.placement.fastsim import JSQOracle, SimConfig, SimResult, simulate
from p2pfaas.placement.policy import Policy, make_policy

POLICIES = ("random", "nearest", "power-of-2", "threshold-probe", "ours")


def _row(result: SimResult, oracle: SimResult, wall_s: float) -> str:
    ratio = result.quantile(0.99) / oracle.quantile(0.99)
    return (
        f"| {result.policy:16} | {result.quantile(0.5) * 1000:8.0f} | {result.quantile(0.99) * 1000:9.0f} "
        f"| {ratio:8.2f}x | {result.per_invocation(result.probes):9.2f} "
        f"| {result.per_invocation(result.forwards):8.2f} | {wall_s:6.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--duration", type=float, default=40.0, help="virtual seconds of arrivals")
    parser.add_argument("--load", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-load", type=float, default=0.5)
    args = parser.parse_args()
    config = SimConfig(nodes=args.nodes, duration_s=args.duration, load=args.load, seed=args.seed)

    def run(policy: Policy | JSQOracle, cfg: SimConfig) -> tuple[SimResult, float]:
        start = time.perf_counter()
        result = simulate(cfg, policy)
        return result, time.perf_counter() - start

    oracle, oracle_wall = run(JSQOracle(), config)
    print(
        f"{args.nodes} nodes, load {args.load:.0%} of capacity, {args.duration:g} s of arrivals "
        f"({oracle.invocations} invocations, first {config.warmup_s:g} s not measured), "
        f"gossip every {config.gossip_period_s:g} s, fan-out {config.gossip_fanout}, seed {args.seed}\n"
    )
    print("| policy           | p50 (ms) | p99 (ms)  | p99/orcl  | probes/inv | fwd/inv | wall s |")
    print("|------------------|---------:|----------:|----------:|-----------:|--------:|-------:|")
    print(_row(oracle, oracle, oracle_wall))
    for name in POLICIES:
        result, wall = run(make_policy(name), config)
        print(_row(result, oracle, wall), flush=True)

    faulty = dataclasses.replace(
        config, load=args.fault_load, fault_at_s=args.duration / 2, kill_fraction=0.3, drain_fraction=0.1
    )
    print(
        f"\nFaults: at t={faulty.fault_at_s:g} s kill 30% of the nodes and drain 10%, "
        f"load {args.fault_load:.0%} of the original capacity; crashes are noticed after "
        f"{faulty.detect_s:g} s and retried under the same invocation id.\n"
    )
    print(
        "| policy           | accepted | completed | lost | client retries | ran twice "
        "| 2nd receipts refused | drained & left | p99 (ms) |"
    )
    print(
        "|------------------|---------:|----------:|-----:|---------------:|----------:|---------------------:"
        "|---------------:|---------:|"
    )
    for policy in (make_policy("ours"), make_policy("power-of-2"), JSQOracle()):
        r, _ = run(policy, faulty)
        print(
            f"| {r.policy:16} | {r.invocations:8} | {r.completed:9} | {r.lost:4} | {r.client_retries:14} "
            f"| {r.duplicate_executions:9} | {r.receipts_refused:20} | {r.drained_in_time:>6}/{r.drained:<7} "
            f"| {r.quantile(0.99) * 1000:8.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

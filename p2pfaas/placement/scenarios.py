"""Placement scenarios for `p2pfaas sim run SCENARIO` (and simulations/README.md).

Each scenario runs the event-heap simulator (`fastsim`) and prints a Markdown table:
- `placement`: every policy beside the JSQ oracle on one network and one arrival stream.
- `placement-faults`: kill 30% and drain 10% of the nodes mid-run; counts what was lost or paid twice.
`--out FILE` also writes the table there (e.g. simulations/results/placement.md).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2pfaas.placement.fastsim import JSQOracle, SimConfig, SimResult, simulate
from p2pfaas.placement.policy import POLICIES, Policy, make_policy


def _policies(names: list[str]) -> list[Policy | JSQOracle]:
    return [JSQOracle(), *(make_policy(n) for n in names)]


def compare(config: SimConfig, names: list[str]) -> str:
    results = [simulate(config, p) for p in _policies(names)]
    oracle = results[0]
    lines = [
        f"{config.nodes} nodes, load {config.load:.0%}, {config.duration_s:g} s of arrivals "
        f"(first {config.warmup_s:g} s not measured), seed {config.seed}",
        "",
        "| policy | p50 (ms) | p99 (ms) | p99 / oracle | probes/inv | forwards/inv |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.policy} | {r.quantile(0.5) * 1000:.0f} | {r.quantile(0.99) * 1000:.0f} "
            f"| {r.quantile(0.99) / oracle.quantile(0.99):.2f}x | {r.per_invocation(r.probes):.2f} "
            f"| {r.per_invocation(r.forwards):.2f} |"
        )
    return "\n".join(lines)


def faults(config: SimConfig, names: list[str]) -> str:
    config = dataclasses.replace(
        config,
        fault_at_s=config.fault_at_s if config.fault_at_s is not None else config.duration_s / 2,
        kill_fraction=0.3,
        drain_fraction=0.1,
    )
    lines = [
        f"{config.nodes} nodes, load {config.load:.0%}; at {config.fault_at_s:g} s kill 30%, drain 10%",
        "",
        "| policy | accepted | completed | lost | client retries | ran twice | 2nd receipts refused "
        "| drained |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for policy in _policies(names):
        r: SimResult = simulate(config, policy)
        lines.append(
            f"| {r.policy} | {r.invocations} | {r.completed} | {r.lost} | {r.client_retries} "
            f"| {r.duplicate_executions} | {r.receipts_refused} | {r.drained_in_time}/{r.drained} |"
        )
    return "\n".join(lines)


SCENARIOS: dict[str, tuple[Callable[[SimConfig, list[str]], str], dict[str, Any]]] = {
    "placement": (compare, {}),
    "placement-faults": (faults, {"load": 0.5}),
}


def _cmd_run(args: argparse.Namespace) -> int:
    run, overrides = SCENARIOS[args.scenario]
    names = args.policy or [n for n in POLICIES if n != "local-only"]
    for name in names:
        make_policy(name)  # a clear error for an unknown name
    config = SimConfig(
        nodes=args.nodes,
        duration_s=args.duration,
        warmup_s=min(10.0, args.duration / 4),
        seed=args.seed,
        load=args.load if args.load is not None else overrides.get("load", 0.9),
    )
    table = run(config, names)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")
    return 0


def register(groups: Any) -> None:
    """Add `p2pfaas sim run SCENARIO`."""
    sim = groups.add_parser("sim", help="research simulations").add_subparsers(
        dest="sim_command", required=True
    )
    text = "run a simulation scenario and print its table"
    run = sim.add_parser(
        "run", help=text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run.set_defaults(handler=_cmd_run)
    run.add_argument("scenario", choices=sorted(SCENARIOS))
    run.add_argument("--nodes", type=int, default=200)
    run.add_argument("--duration", type=float, default=40.0, help="virtual seconds of arrivals")
    run.add_argument("--load", type=float, help="fraction of total capacity (default 0.9; faults 0.5)")
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--policy", action="append", help="a policy to include (repeatable; default all)")
    run.add_argument("--out", help="also write the table to this file")

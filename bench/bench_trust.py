"""What verification costs, and what it catches: BOINC adaptive replication against replicating everything.

Runs the real sans-I/O cores (`p2pfaas.trust.adaptive.AdaptivePolicy`, `p2pfaas.trust.vote.Vote`)
on a seeded model network: `--nodes` volunteers, of which a fraction lie; `--invocations` calls of
a deterministic function, each sent first to a node drawn at random. Policies:

- **always**: every call is replicated (quorum 2, one more replica per disagreement, cap 5);
- **adaptive**: a node with CV consecutive agreements >= 10 is trusted alone with probability
  1 - 1/CV; otherwise the call is replicated as above. Records move as the anchor moves them.

A liar returns a wrong result with probability `--lie-rate` on each call; liars collude (all their
wrong results agree), the worst case for a vote. Printed per policy and per window of calls: replicas
per call (the cost, 1.0 = no verification) and wrong results accepted per million calls.

    .venv/bin/python -m bench.bench_trust --nodes 200 --invocations 100000
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

from p2pfaas.trust.adaptive import AdaptivePolicy, Record
from p2pfaas.trust.vote import Agreed, Ballot, NeedMore, Vote

RIGHT, WRONG = b"right", b"wrong"


@dataclass
class Totals:
    calls: int = 0
    replicas: int = 0
    wrong_accepted: int = 0
    liars_caught: int = 0


def run(
    *,
    nodes: int,
    liars: float,
    lie_rate: float,
    invocations: int,
    policy: AdaptivePolicy | None,
    windows: int,
    seed: int,
) -> list[Totals]:
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(nodes)]
    lying = set(rng.sample(names, round(nodes * liars)))
    records = {name: Record() for name in names}
    per_window = invocations // windows
    out = [Totals() for _ in range(windows)]
    for call in range(per_window * windows):
        totals = out[call // per_window]
        totals.calls += 1
        order = rng.sample(names, 6)

        def answer(node: str) -> bytes:
            return WRONG if node in lying and rng.random() < lie_rate else RIGHT

        first = order[0]
        if policy is not None and not policy.should_replicate(records[first], rng):
            totals.replicas += 1
            totals.wrong_accepted += answer(first) == WRONG
            continue
        vote = Vote(quorum=2, max_replicas=5)
        used = 0
        decision = vote.decide()
        while isinstance(decision, NeedMore):
            for node in order[used : used + decision.count]:
                vote.cast(Ballot(node, answer(node)))
            used += decision.count
            decision = vote.decide()
        totals.replicas += used
        if isinstance(decision, Agreed):
            totals.wrong_accepted += decision.result_sha256 == WRONG
            totals.liars_caught += len(decision.dissenting & lying)
            for node in decision.agreeing | decision.dissenting:
                if policy is not None:
                    records[node] = policy.after_vote(records[node], agreed=node in decision.agreeing)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--invocations", type=int, default=100_000)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    per_window = args.invocations // args.windows
    print(f"{args.nodes} nodes, {args.invocations} calls, {args.windows} windows of {per_window}")
    print()
    header = (
        "| liars | lie rate | policy | replicas/call by window | mean | vs always "
        "| wrong accepted /1M | in the last window |"
    )
    print(header)
    print("|" + "---|" * 8)
    for liars, lie_rate in ((0.0, 0.0), (0.05, 1.0), (0.05, 0.1), (0.2, 0.1)):
        baseline = 0.0
        policies: tuple[tuple[str, AdaptivePolicy | None], ...] = (
            ("always", None),
            ("adaptive (BOINC's rule)", AdaptivePolicy(min_check_rate=0.0, repeat_penalty=0)),
            ("adaptive, 5 % floor", AdaptivePolicy(repeat_penalty=0)),
            ("adaptive, floor + repeat penalty (default)", AdaptivePolicy()),
        )
        for label, policy in policies:
            windows = run(
                nodes=args.nodes,
                liars=liars,
                lie_rate=lie_rate,
                invocations=args.invocations,
                policy=policy,
                windows=args.windows,
                seed=args.seed,
            )
            per_call = [w.replicas / w.calls for w in windows]
            calls = sum(w.calls for w in windows)
            mean = sum(w.replicas for w in windows) / calls
            baseline = baseline or mean
            wrong = 1e6 * sum(w.wrong_accepted for w in windows) / calls
            wrong_last = 1e6 * windows[-1].wrong_accepted / windows[-1].calls
            trail = " ".join(f"{x:.2f}" for x in per_call)
            print(
                f"| {liars:.0%} | {lie_rate:.0%} | {label} | {trail} | {mean:.3f} | {mean / baseline:.2f}x "
                f"| {wrong:.0f} | {wrong_last:.0f} |"
            )


if __name__ == "__main__":
    main()

"""What recording a node's metrics costs per warm invocation (issue #20), in CPU microseconds.

Runs, in one process, everything a node records for one warm invocation with metrics on: the
request middleware's count and time of `/v1/invoke`, `NodeMetrics.invoked` (outcome counter,
three stage histograms, the warm-start counter) and the log fields bound for the call
(`logfmt.bind` and `annotate`), against a baseline of the same loop doing nothing. Rounds of
`--n` invocations; the table gives the median and p99 over rounds of the time per invocation.
Also: one scrape's exposition time. The end-to-end figure (a node's throughput with and without
metrics, in the same run) comes from `bench.bench_exec throughput --metrics off,on`.

    .venv/bin/python -m bench.bench_metrics [--n 20000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from p2pfaas import logfmt
from p2pfaas.metrics.catalog import NodeMetrics
from p2pfaas.metrics.files import exposition


def per_call_us(call: Callable[[], object], n: int, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            call()
        times.append((time.perf_counter() - started) / n * 1e6)
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    metrics = NodeMetrics()

    def nothing() -> None:
        return None

    def record() -> None:
        with logfmt.bind(invocation="0123456789abcdef0123456789abcdef"):
            logfmt.annotate(invocation="0123456789abcdef0123456789abcdef", function="echo")
            metrics.http.observe("/v1/invoke", 200, 0.0004)
            metrics.invoked(
                "echo", "ok", queue_s=0.00001, run_s=0.0003, total_s=0.0004, cold=False, cold_start_s=0.0
            )

    base = per_call_us(nothing, args.n, args.rounds)
    cost = per_call_us(record, args.n, args.rounds)
    scrape = per_call_us(lambda: exposition(metrics.registry, None), 50, args.rounds)
    p99 = max(0, int(0.99 * args.rounds) - 1)
    print(f"metrics recorded per warm invocation: {args.rounds} rounds of {args.n}")
    print(f"{'what':<34} {'median us':>10} {'p99 us':>8} {'vs baseline':>12}")
    print(
        f"{'baseline (an empty call)':<34} {statistics.median(base):>10.2f} {base[p99]:>8.2f} {'1.00x':>12}"
    )
    ratio = statistics.median(cost) / statistics.median(base)
    print(
        f"{'one invocation recorded':<34} {statistics.median(cost):>10.2f} {cost[p99]:>8.2f} {ratio:>11.1f}x"
    )
    print(f"{'one scrape (exposition)':<34} {statistics.median(scrape):>10.0f} {scrape[p99]:>8.0f} {'-':>12}")


if __name__ == "__main__":
    main()

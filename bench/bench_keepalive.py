"""Replay a synthetic Azure-Functions-2019-shaped trace through the warm-pool policy cores.

Compares cold-start share and warm-container memory of our policy (hybrid histogram keep-alive of
Shahrad et al., ATC'20, plus the per-function arrival forecast) with fixed 10- and 20-minute
keep-alive, all driving the same sans-I/O `WarmPoolPolicy` on a virtual clock. Asserts nothing.

Run: .venv/bin/python -m bench.bench_keepalive [--functions 200] [--days 3] [--seed 1]

The trace generator (`generate_trace`) imitates what Shahrad et al. (section 3) report for the
Azure Functions 2019 trace, since the trace itself is not available offline:
- invocation rates span orders of magnitude: the daily rate per function is log-normal, fitted so
  that ~45% of functions are invoked at most once an hour and ~80% at most once a minute; the
  hottest are capped at `--max-daily` to keep the replay short;
- arrival patterns: timers (fixed period with small jitter; the paper's most common trigger),
  Poisson arrivals modulated by a diurnal sine (HTTP/queue triggers), and bursty ON/OFF functions
  (bursts of geometric size with ~2 s spacing, separated by Pareto(1.5) gaps: heavy-tailed
  inter-arrival times, CV >> 1);
- execution times log-normal with a median of ~0.7 s; memory 128-512 MB, skewed low.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from p2pfaas.exec.forecast import ArrivalForecast
from p2pfaas.exec.keepalive import FixedKeepAlive, HybridHistogramPolicy
from p2pfaas.exec.pool_policy import Decision, KeepAlivePolicy, WarmPoolPolicy, node_defaults

DAY_S = 86_400.0
COLD_START_S = 0.5  # boot time added to a cold invocation (the instance is busy meanwhile)


@dataclass(frozen=True)
class Function:
    digest: str
    pattern: str  # "timer" | "diurnal" | "bursty"
    daily_rate: float
    memory_mb: int
    mean_run_s: float


@dataclass(frozen=True)
class Invocation:
    at_s: float
    digest: str
    run_s: float


def generate_trace(
    *, seed: int, functions: int, days: float, max_daily: float = 20_000
) -> tuple[list[Function], list[Invocation]]:
    rng = random.Random(seed)
    horizon_s = days * DAY_S
    # log-normal daily rate: P(rate <= 24/day) ~ 0.45, P(rate <= 1440/day) ~ 0.80.
    mu, sigma = 3.69, 4.07
    fns: list[Function] = []
    trace: list[Invocation] = []
    for index in range(functions):
        rate = min(math.exp(rng.gauss(mu, sigma)), max_daily)
        rate = max(rate, 0.2)  # at least one call every five days on average
        pattern = rng.choices(["timer", "diurnal", "bursty"], weights=[0.35, 0.40, 0.25])[0]
        memory_mb = rng.choice([128, 128, 128, 192, 256, 256, 384, 512])
        mean_run_s = min(math.exp(rng.gauss(math.log(0.7), 1.2)), 60.0)
        fn = Function(f"{index:064x}", pattern, rate, memory_mb, mean_run_s)
        fns.append(fn)
        for at_s in _arrivals(rng, fn, horizon_s):
            run_s = min(rng.lognormvariate(math.log(mean_run_s), 0.5), 120.0)
            trace.append(Invocation(at_s, fn.digest, run_s))
    trace.sort(key=lambda inv: inv.at_s)
    return fns, trace


def _arrivals(rng: random.Random, fn: Function, horizon_s: float) -> list[float]:
    mean_gap_s = DAY_S / fn.daily_rate
    out: list[float] = []
    if fn.pattern == "timer":
        # Timers fire on round periods; pick the one closest to the rate.
        periods = [60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400, 43_200, 86_400]
        period_s = min(periods, key=lambda p: abs(math.log(p / mean_gap_s)))
        t = rng.uniform(0, period_s)
        while t < horizon_s:
            out.append(t + rng.uniform(0, min(2.0, period_s * 0.01)))  # scheduling jitter
            t += period_s
    elif fn.pattern == "diurnal":
        # Thinning of a Poisson process with rate (1 + 0.8 sin) x mean.
        phase = rng.uniform(0, 2 * math.pi)
        peak = 1.8 / mean_gap_s
        t = 0.0
        while True:
            t += rng.expovariate(peak)
            if t >= horizon_s:
                break
            if rng.random() < (1 + 0.8 * math.sin(2 * math.pi * t / DAY_S + phase)) / 1.8:
                out.append(t)
    else:
        burst_mean = rng.choice([3, 10, 30])
        gap_alpha = 1.5  # Pareto: mean = scale * alpha / (alpha - 1) = 3 x scale
        scale_s = max(mean_gap_s * burst_mean / 3, 1.0)
        t = rng.uniform(0, scale_s)
        while t < horizon_s:
            for _ in range(1 + int(rng.expovariate(1 / burst_mean))):
                out.append(t)
                t += rng.expovariate(0.5)
            t += scale_s * rng.paretovariate(gap_alpha)
    return [t for t in out if t < horizon_s]


@dataclass
class Stats:
    invocations: int = 0
    cold: int = 0
    gb_s: float = 0.0  # memory of instances in memory (busy or idle), integrated over time
    idle_gb_s: float = 0.0  # the part of it with the instance idle: the cost of keeping warm
    horizon_s: float = 0.0
    prewarms: int = 0


def replay(trace: list[Invocation], fns: list[Function], policy: WarmPoolPolicy, horizon_s: float) -> Stats:
    """Drive `policy` with the trace on a virtual clock; every instance boots in `COLD_START_S`."""
    memory = {fn.digest: fn.memory_mb for fn in fns}
    stats = Stats(horizon_s=horizon_s)
    ends: list[tuple[float, int, str]] = []  # (when, seq, instance id) of running invocations
    busy_mb = 0
    ids = iter(range(1 << 62))

    def new_id() -> str:
        return f"i{next(ids)}"

    now = 0.0

    def advance(to: float) -> None:
        nonlocal now
        used = policy.memory_used_mb
        stats.gb_s += used / 1024 * (to - now)
        stats.idle_gb_s += (used - busy_mb) / 1024 * (to - now)
        now = to

    def timers_until(limit: float) -> None:
        nonlocal busy_mb
        while True:
            next_end = ends[0][0] if ends else math.inf
            deadline = policy.next_deadline()
            at = min(next_end, deadline)
            if at > limit:
                return
            advance(max(at, now))
            if next_end <= deadline:
                _, _, instance_id = heapq.heappop(ends)
                digest = policy.digest_of(instance_id)
                busy_mb -= memory[digest]
                policy.release(instance_id, now)
            else:
                policy.expired(now)
                for _digest, instance_id in policy.prewarm(now, new_id):
                    stats.prewarms += 1
                    policy.booted(instance_id, now)  # pre-warms boot off the critical path

    for seq, inv in enumerate(trace):
        timers_until(inv.at_s)
        advance(inv.at_s)
        acquired = policy.acquire(inv.digest, now, new_id=new_id(), memory_mb=memory[inv.digest])
        assert acquired.decision is not Decision.WAIT, "the per-function cap is set out of reach"
        stats.invocations += 1
        run_s = inv.run_s
        if acquired.decision is Decision.START:
            stats.cold += 1
            run_s += COLD_START_S
        busy_mb += memory[inv.digest]
        heapq.heappush(ends, (now + run_s, seq, acquired.instance_id))
    timers_until(horizon_s)
    advance(horizon_s)
    return stats


POLICIES: dict[str, Callable[[], tuple[KeepAlivePolicy, ArrivalForecast | None]]] = {
    "fixed 10 min": lambda: (FixedKeepAlive(600.0), None),
    "fixed 20 min": lambda: (FixedKeepAlive(1200.0), None),
    "hybrid, paper's parameters": lambda: (HybridHistogramPolicy(fallback_keep_alive_s=600.0), None),
    "hybrid, memory-budgeted": lambda: (
        HybridHistogramPolicy(fallback_keep_alive_s=600.0, memory_budget=True),
        None,
    ),
    "ours: budgeted + forecast": lambda: node_defaults(600.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--functions", type=int, default=200)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-daily", type=float, default=20_000)
    args = parser.parse_args()
    started = time.perf_counter()
    fns, trace = generate_trace(
        seed=args.seed, functions=args.functions, days=args.days, max_daily=args.max_daily
    )
    horizon_s = args.days * DAY_S
    rates = sorted(fn.daily_rate for fn in fns)
    hourly = sum(r <= 24 for r in rates) / len(rates)
    minutely = sum(r <= 1440 for r in rates) / len(rates)
    counts: dict[str, int] = {}
    for inv in trace:
        counts[inv.digest] = counts.get(inv.digest, 0) + 1
    top = sorted(counts.values(), reverse=True)
    top1 = sum(top[: max(len(fns) // 100, 1)]) / len(trace)
    print(
        f"trace: seed {args.seed}, {len(fns)} functions, {args.days:g} days, {len(trace)} invocations; "
        f"{hourly:.0%} of functions called <= 1/hour, {minutely:.0%} <= 1/minute; "
        f"the top 1% of functions make {top1:.0%} of invocations "
        f"(generated in {time.perf_counter() - started:.1f} s)"
    )
    print()
    header = (
        f"{'policy':<28} {'cold starts':>11} {'cold %':>7} {'x fixed10':>9} "
        f"{'GB-s':>10} {'idle GB-s':>10} {'mean GB':>8} {'x fixed10':>9} {'pre-warms':>9}"
    )
    print(header)
    print("-" * len(header))
    baseline: Stats | None = None
    for name, make in POLICIES.items():
        keep_alive, forecast = make()
        policy = WarmPoolPolicy(max_per_function=10_000, keep_alive=keep_alive, forecast=forecast)
        stats = replay(trace, fns, policy, horizon_s)
        baseline = baseline or stats
        print(
            f"{name:<28} {stats.cold:>11} {stats.cold / stats.invocations:>7.2%} "
            f"{stats.cold / baseline.cold:>9.3f} {stats.gb_s:>10.0f} {stats.idle_gb_s:>10.0f} "
            f"{stats.gb_s / horizon_s:>8.3f} {stats.gb_s / baseline.gb_s:>9.3f} {stats.prewarms:>9}"
        )


if __name__ == "__main__":
    main()

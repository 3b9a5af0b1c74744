"""What `p2pfaas top` shows: per node and per function figures, from two scrapes of /metrics.

`scrape(session, url)` reads a node's exposition into a `Scrape` (samples by name and labels, and
when). The rest is sans-I/O: `node_row(previous, current)` gives a node's slots, queue, warm
instances, invocations per second and p50/p99 over the interval between the two scrapes (or since
the node started, with one scrape), and what it earned; `function_rows` sums calls and cold starts
per function over every node. Quantiles are interpolated within histogram buckets, as PromQL's
`histogram_quantile` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["FunctionRow", "NodeRow", "Scrape", "function_rows", "node_row", "parse", "quantile", "scrape"]

P = "p2pfaas_node_"
MAX_BYTES = 4 << 20  # a node's exposition is tens of KB; a bigger one is not read
MAX_SAMPLES = 20_000

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Scrape:
    url: str
    at: float  # the caller's clock, seconds
    samples: dict[Key, float]
    error: str = ""  # why there are no samples

    def get(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels`."""
        wanted = labels.items()
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= dict(ls).items())

    def by(self, name: str, label: str) -> dict[str, float]:
        """The samples named `name`, summed by one label's value."""
        sums: dict[str, float] = {}
        for (n, labels), v in self.samples.items():
            if n == name:
                key = dict(labels).get(label, "")
                sums[key] = sums.get(key, 0.0) + v
        return sums


def parse(url: str, text: str, at: float) -> Scrape:
    """A node's exposition as samples. Any node (a stranger's, listed by the anchor) may send
    anything: non-finite values are dropped, and what does not parse is the Scrape's error."""
    samples: dict[Key, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if math.isfinite(sample.value) and len(samples) < MAX_SAMPLES:
                    samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    except (ValueError, TypeError, IndexError) as exc:
        return Scrape(url, at, {}, f"not the Prometheus text format: {exc}"[:200])
    return Scrape(url, at, samples)


async def scrape(session: aiohttp.ClientSession, url: str, *, at: float, timeout_s: float = 3.0) -> Scrape:
    """`url`'s /metrics; a node that does not answer gives a Scrape with its `error`."""
    try:
        async with session.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=timeout_s)) as answer:
            if answer.status != 200:
                return Scrape(url, at, {}, f"HTTP {answer.status}")
            body = await answer.content.read(MAX_BYTES + 1)
            if len(body) > MAX_BYTES:
                return Scrape(url, at, {}, "exposition too large")
            return parse(url, body.decode("utf-8", "replace"), at)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        return Scrape(url, at, {}, (str(exc) or type(exc).__name__)[:200])


@dataclass(frozen=True)
class NodeRow:
    url: str
    slots: int
    busy: int
    queue: int
    warm: int
    per_s: float | None  # invocations per second over the interval (None: one scrape)
    p50_s: float | None
    p99_s: float | None
    earned_micro: int
    error: str = ""


@dataclass(frozen=True)
class FunctionRow:
    name: str
    calls: int
    cold_starts: int
    per_s: float | None


def node_row(previous: Scrape | None, current: Scrape) -> NodeRow:
    if current.error:
        return NodeRow(current.url, 0, 0, 0, 0, None, None, None, 0, current.error)
    calls = current.get(P + "invocations_total")
    per_s = None
    buckets = _buckets(current)
    if previous is not None and not previous.error and current.at > previous.at:
        per_s = max(0.0, calls - previous.get(P + "invocations_total")) / (current.at - previous.at)
        before = dict(_buckets(previous))
        buckets = [(le, count - before.get(le, 0.0)) for le, count in buckets]
    return NodeRow(
        url=current.url,
        slots=int(current.get(P + "slots", state="total")),
        busy=int(current.get(P + "slots", state="busy")),
        queue=int(current.get(P + "queue_length")),
        warm=int(current.get(P + "warm_instances")),
        per_s=per_s,
        p50_s=quantile(0.5, buckets),
        p99_s=quantile(0.99, buckets),
        earned_micro=int(current.get(P + "earned_micro_total")),
    )


def function_rows(previous: Sequence[Scrape], current: Sequence[Scrape]) -> list[FunctionRow]:
    """Per function over every node, busiest first."""

    def totals(scrapes: Iterable[Scrape], name: str, **labels: str) -> dict[str, float]:
        sums: dict[str, float] = {}
        for s in scrapes:
            for (n, ls), v in s.samples.items():
                d = dict(ls)
                if n == name and labels.items() <= d.items():
                    key = d.get("function", "?")
                    sums[key] = sums.get(key, 0.0) + v
        return sums

    calls = totals(current, P + "invocations_total")
    cold = totals(current, P + "instance_starts_total", kind="cold")
    before = totals(previous, P + "invocations_total") if previous else {}
    span = _span(previous, current)
    rows = [
        FunctionRow(
            name,
            int(n),
            int(cold.get(name, 0)),
            None if span is None else max(0.0, n - before.get(name, 0.0)) / span,
        )
        for name, n in calls.items()
    ]
    return sorted(rows, key=lambda r: (-(r.per_s or 0.0), -r.calls, r.name))


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The `q` quantile of cumulative `buckets` (upper bound, count), interpolated linearly within
    the bucket it falls in; None with no observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # in the open-ended bucket: its lower bound, as PromQL does
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def _buckets(scrape: Scrape) -> list[tuple[float, float]]:
    """The `total` stage's latency buckets, summed over the node's processes, in bound order."""
    sums: dict[float, float] = {}
    for (name, labels), value in scrape.samples.items():
        d = dict(labels)
        if name == P + "invocation_seconds_bucket" and d.get("stage") == "total":
            try:
                bound = float(d.get("le", ""))
            except ValueError:
                continue  # a hostile node's bucket: left out
            if not math.isnan(bound):
                sums[bound] = sums.get(bound, 0.0) + value
    return sorted(sums.items())


def _span(previous: Sequence[Scrape], current: Sequence[Scrape]) -> float | None:
    if not previous or not current:
        return None
    span = min(s.at for s in current) - min(s.at for s in previous)
    return span if span > 0 else None

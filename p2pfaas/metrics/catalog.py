"""Every metric the node and the anchor expose: names, types, units and labels, defined once.

`NodeMetrics` and `AnchorMetrics` each own a `CollectorRegistry` (a process may run many nodes:
the simulator, tests), with the figures recorded on the hot path as prometheus-client objects,
and the figures that already exist elsewhere (slots, queues, routing tables, receipts) read at
scrape time through a `Readings` callback, so they cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "ANCHOR_READINGS",
    "NODE_READINGS",
    "AnchorMetrics",
    "FunctionLabels",
    "NodeMetrics",
    "Reading",
    "Readings",
]

# No `_created` series: a start time for every series doubles their number for little use.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds: from a warm call's half millisecond to a cold start's seconds and a long run's minutes.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
MAX_FUNCTIONS = 64  # distinct `function` label values per process; the rest count as "other"
OUTCOMES = ("ok", "failed", "busy", "refused")
STAGES = ("queue", "run", "total")
_KIND = {True: "cold", False: "warm"}


@dataclass(frozen=True)
class Reading:
    """A figure read at scrape time: its name (without the prefix), kind and help, and one label."""

    name: str
    kind: str  # "gauge" or "counter"
    help: str
    label: str = ""  # the one label's name, or "" for none


# What a node's `Readings` callback returns values for: {name: value} or {name: {label value: value}}.
NODE_READINGS = (
    Reading("slots", "gauge", "Invocation slots the node lends, by state (total, busy).", "state"),
    Reading("queue_length", "gauge", "Invocations waiting for a slot."),
    Reading(
        "memory_mb", "gauge", "Memory the node lends and holds for running calls (lent, reserved).", "state"
    ),
    Reading("warm_instances", "gauge", "Idle or busy function instances kept started."),
    Reading(
        "forwards", "counter", "Invocations forwarded to peers, by result (accepted, refused).", "result"
    ),
    Reading(
        "pulls",
        "counter",
        "Queued invocations handed to peers that reported room (accepted, refused).",
        "result",
    ),
    Reading("dht_contacts", "gauge", "Nodes in the DHT routing table."),
    Reading("gossip_peers", "gauge", "Peers whose load report is fresh."),
    Reading("gossip_report_age_seconds", "gauge", "Age of the oldest fresh peer load report."),
    Reading("receipts_pending", "gauge", "Signed receipts not yet answered by the anchor."),
    Reading(
        "receipts_settled",
        "counter",
        "Receipts the anchor answered, by result (paid, duplicate, refused, given_up).",
        "result",
    ),
    Reading("earned_micro", "counter", "Node price the anchor paid for this node's receipts, micro-credits."),
    Reading(
        "voucher_budget_left_micro",
        "gauge",
        "What the vouchers served here can still pay this node, micro-credits.",
    ),
)

ANCHOR_READINGS = (
    Reading("db_connections", "gauge", "Database pool connections, by state (in_use, idle).", "state"),
    Reading(
        "receipts_settled",
        "counter",
        "Receipts settled, by result (paid, duplicate, refused, unsigned).",
        "result",
    ),
    Reading("settled_micro", "counter", "Node price paid for receipts and channel rests, micro-credits."),
    Reading("channel_rounds", "counter", "Channel rounds run."),
)

Readings = Callable[[], dict[str, float | dict[str, float]]]


@dataclass
class FunctionLabels:
    """The `function` label of a name: itself for the first `limit` names seen, then "other"."""

    limit: int = MAX_FUNCTIONS
    _seen: set[str] = field(default_factory=set)

    def known(self, name: str) -> str:
        """`name` if it has its own label already, else "other" (taking no place)."""
        return name if name in self._seen else "other"

    def __call__(self, name: str) -> str:
        if name in self._seen:
            return name
        if len(self._seen) >= self.limit:
            return "other"
        self._seen.add(name)
        return name


class _ReadingsCollector(Collector):
    def __init__(self, prefix: str, readings: tuple[Reading, ...], read: Readings) -> None:
        self.prefix, self.readings, self.read = prefix, readings, read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        values = self.read()
        for reading in self.readings:
            value = values.get(reading.name)
            if value is None:
                continue
            name = f"{self.prefix}_{reading.name}"
            labels = [reading.label] if reading.label else None
            family: CounterMetricFamily | GaugeMetricFamily = (
                CounterMetricFamily(name, reading.help, labels=labels)
                if reading.kind == "counter"
                else GaugeMetricFamily(name, reading.help, labels=labels)
            )
            if isinstance(value, dict):
                for label_value, number in sorted(value.items()):
                    family.add_metric([label_value], number)
            else:
                family.add_metric([], value)
            yield family


class _Metrics:
    """A registry of one process's figures, and the `Readings` it reads when scraped."""

    PREFIX: ClassVar[str]
    READINGS: ClassVar[tuple[Reading, ...]]

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.http = HttpFigures(self.PREFIX, self.registry)
        self._readings: Readings | None = None

    def set_readings(self, read: Readings) -> None:
        """What to read at each scrape (set by the daemon once the parts it reads exist)."""
        if self._readings is None:
            self.registry.register(_ReadingsCollector(self.PREFIX, self.READINGS, self._read))
        self._readings = read

    def _read(self) -> dict[str, float | dict[str, float]]:
        return {} if self._readings is None else self._readings()


class NodeMetrics(_Metrics):
    """A node's metrics (prefix `p2pfaas_node`). `readings` is set by the daemon once the parts it
    reads exist; a worker process records only the hot-path figures, which its primary sums."""

    PREFIX = "p2pfaas_node"
    READINGS = NODE_READINGS

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        p, r = self.PREFIX, self.registry
        self.function_label = FunctionLabels()
        self.invocations = Counter(
            f"{p}_invocations", "Invocations by function and outcome (ok, failed, busy, refused).",
            ["function", "outcome"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            f"{p}_invocation_seconds", "Invocation time by stage: queue (waiting for a slot), run "
            "(in the executor, cold start included), total (request verified to result signed).",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.cold_start = Histogram(
            f"{p}_cold_start_seconds", "Time a cold invocation spent starting its instance.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.starts = Counter(
            f"{p}_instance_starts", "Invocations by function and how their instance was had: warm "
            "(kept) or cold (started for it).", ["function", "kind"], registry=r,
        )  # fmt: skip
        self.dht_lookup = Histogram(
            f"{p}_dht_lookup_seconds", "DHT lookups (adverts and bundle providers), end to end.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        # Bound once: a label lookup per observation is the dearest part of recording.
        self._stage = {stage: self.latency.labels(stage) for stage in STAGES}
        self._children: dict[tuple[str, str, bool], tuple[Counter, Counter]] = {}

    def invoked(
        self, function: str, outcome: str, *, queue_s: float, run_s: float, total_s: float,
        cold: bool, cold_start_s: float,
    ) -> None:  # fmt: skip
        """One invocation that got a slot and ran (ok or failed)."""
        label = self.function_label(function)
        key = (label, outcome, cold)  # bounded: labels are
        children = self._children.get(key)
        if children is None:  # once per label and outcome: `labels()` is the dearest call here
            children = self.invocations.labels(label, outcome), self.starts.labels(label, _KIND[cold])
            self._children[key] = children
        children[0].inc()
        children[1].inc()
        self._stage["queue"].observe(queue_s)
        self._stage["run"].observe(run_s)
        self._stage["total"].observe(total_s)
        if cold:
            self.cold_start.observe(cold_start_s)

    def not_run(self, function: str, outcome: str) -> None:
        """One invocation refused (busy, not paid for, not allowed) before it ran. Only calls that
        ran give a function its own label: refused ones, which cost a stranger nothing, cannot
        take the 64 names."""
        self.invocations.labels(self.function_label.known(function), outcome).inc()


class AnchorMetrics(_Metrics):
    """The anchor's metrics (prefix `p2pfaas_anchor`)."""

    PREFIX = "p2pfaas_anchor"
    READINGS = ANCHOR_READINGS

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.settlement_lag = Histogram(
            f"{self.PREFIX}_settlement_lag_seconds", "From a receipt's signing by its node to its payment.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400), registry=self.registry,
        )  # fmt: skip


class HttpFigures:
    """Requests by route template and status, and their latency by route (`http.middleware`)."""

    def observe(self, route: str, status: int, seconds: float) -> None:
        counter = self._requests.get((route, status))
        if counter is None:  # once per route and status (both bounded)
            counter = self._requests[route, status] = self.requests.labels(route, str(status))
        histogram = self._latency.get(route)
        if histogram is None:
            histogram = self._latency[route] = self.latency.labels(route)
        counter.inc()
        histogram.observe(seconds)

    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            f"{prefix}_http_requests", "HTTP requests by route template and status code.",
            ["route", "status"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            f"{prefix}_http_request_seconds", "HTTP request handling time by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._requests: dict[tuple[str, int], Counter] = {}
        self._latency: dict[str, Histogram] = {}

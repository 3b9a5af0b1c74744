"""Placement policies: where an invocation that reached this node should run.

Every policy is a sans-I/O core with the same two calls, so the event-heap simulator and the node's
router drive them identically:

- `decide(local, peers, rng)` returns a `Decision` (`peers()` lists the view's candidates; a policy
  calls it only when it looks beyond this node, as building it costs more than the decision): run
  here (`LOCAL`), forward to `targets` in order (`FORWARD`; `conditional` forwards may be refused
  by a target with no free slot, and the next one is tried, then the policy is asked again, up to a
  bound, after which this node queues it), or probe `targets` for their exact load first (`PROBE`).
- `after_probe(local, answers, rng)` turns probe answers into `LOCAL` or a forced `FORWARD`; a
  `sequential` probe stops at the first answer `acceptable()` says yes to.

Policies: `LocalOnly`; `RandomForward` and `Nearest` (run here if a slot is free, else one forward);
`PowerOfD` (probe d random peers, Mitzenmacher's power of two choices); `ThresholdProbe` (P2PFaaS,
Proietti Mattia & Beraldi 2021/2023: run here below a load threshold, else probe up to `probes`
random peers one after another and forward to the first one below the threshold); and `Gossip`
(ours): power of d choices drawn from the gossiped view, weighted by estimated free slots and scored
by predicted RTT and warm instances, sent as conditional forwards so a stale view costs a refusal
rather than a queue.

`pulls_work` says whether a node running the policy also takes part in work pulling (the router's
`offer`/`on_room`: a node with a free slot announces it, a node with a queue hands work to it). Only
ours does; the others are the published schemes as they are.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from p2pfaas.errors import ConfigError
from p2pfaas.placement.view import Candidate


class Kind(enum.Enum):
    LOCAL = "local"
    FORWARD = "forward"
    PROBE = "probe"


@dataclass(frozen=True)
class Decision:
    kind: Kind
    targets: tuple[str, ...] = ()
    conditional: bool = False  # FORWARD: targets may refuse (no free slot); then the next is tried
    sequential: bool = False  # PROBE: one at a time, stopping at the first acceptable answer

    def __post_init__(self) -> None:
        assert self.kind is Kind.LOCAL or self.targets, "forward and probe decisions need targets"


LOCAL = Decision(Kind.LOCAL)


@dataclass(frozen=True)
class LocalState:
    """This node's own load, exact."""

    capacity: int
    busy: int
    queued: int
    draining: bool = False

    @property
    def load(self) -> int:
        return self.busy + self.queued

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.load)


@dataclass(frozen=True)
class ProbeAnswer:
    """A peer's exact load at the time it answered a probe."""

    node_id: str
    capacity: int
    load: int  # running + queued
    rtt_s: float
    draining: bool = False

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.load)


Peers = Callable[[], Sequence[Candidate]]


class Policy(Protocol):
    name: str
    pulls_work: ClassVar[bool]

    def decide(self, local: LocalState, peers: Peers, rng: random.Random) -> Decision: ...

    def acceptable(self, answer: ProbeAnswer) -> bool: ...

    def after_probe(
        self, local: LocalState, answers: Sequence[ProbeAnswer], rng: random.Random
    ) -> Decision: ...


def _wait_s(load: float, capacity: int, mean_service_s: float) -> float:
    """Expected queueing delay at a node with `load` jobs on `capacity` slots (0 while a slot is free)."""
    if capacity <= 0:
        return float("inf")
    return max(0.0, load + 1 - capacity) / capacity * mean_service_s


class _NoProbe:
    """Shared by policies that never probe."""

    pulls_work: ClassVar[bool] = False

    def acceptable(self, answer: ProbeAnswer) -> bool:
        return False

    def after_probe(self, local: LocalState, answers: Sequence[ProbeAnswer], rng: random.Random) -> Decision:
        return LOCAL


def _forced_elsewhere(peers: Sequence[Candidate], mean_service_s: float) -> Decision:
    """A draining node must not queue: the peer with the least expected wait takes it."""
    if not peers:
        return LOCAL  # nobody to hand it to: the caller refuses or keeps it
    best = min(
        peers, key=lambda c: _wait_s(c.est_queue + c.capacity - c.est_free, c.capacity, mean_service_s)
    )
    return Decision(Kind.FORWARD, (best.node_id,))


@dataclass
class LocalOnly(_NoProbe):
    name: str = "local-only"

    def decide(self, local: LocalState, peers: Peers, rng: random.Random) -> Decision:
        return LOCAL


@dataclass
class RandomForward(_NoProbe):
    """Run here if a slot is free, else forward to a uniformly random neighbour."""

    name: str = "random"

    def decide(self, local: LocalState, peers: Peers, rng: random.Random) -> Decision:
        if local.free > 0 and not local.draining:
            return LOCAL
        near = peers()
        return Decision(Kind.FORWARD, (rng.choice(near).node_id,)) if near else LOCAL


@dataclass
class Nearest(_NoProbe):
    """Run here if a slot is free, else forward to the neighbour with the smallest RTT."""

    name: str = "nearest"

    def decide(self, local: LocalState, peers: Peers, rng: random.Random) -> Decision:
        if local.free > 0 and not local.draining:
            return LOCAL
        near = peers()
        return Decision(Kind.FORWARD, (min(near, key=lambda c: c.rtt_s).node_id,)) if near else LOCAL


@dataclass
class PowerOfD:
    """Run here if a slot is free, else probe `d` random neighbours and send it to the least loaded
    (load per slot) of them, or keep it if this node is less loaded still."""

    d: int = 2
    name: str = "power-of-2"
    pulls_work: ClassVar[bool] = False

    def decide(self, local: LocalState, peers: Peers, rng: random.Random) -> Decision:
        if local.free > 0 and not local.draining:
            return LOCAL
        near = list(peers())
        if not near:
            return LOCAL
        picks = rng.sample(near, min(self.d, len(near)))
        return Decision(Kind.PROBE, tuple(c.node_id for c in picks))

    def acceptable(self, answer: ProbeAnswer) -> bool:
        return False

    def after_probe(self, local: LocalState, answers: Sequence[ProbeAnswer], rng: random.Random) -> Decision:
        live = [a for a in answers if not a.draining and a.capacity > 0]
        if not live:
            return LOCAL
        best = min(live, key=lambda a: ((a.load + 1) / a.capacity, a.rtt_s))
        if (
            not local.draining
            and local.capacity > 0
            and (local.load + 1) / local.capacity <= (best.load + 1) / best.capacity
        ):
            return LOCAL
        return Decision(Kind.FORWARD, (best.node_id,))


@dataclass
class ThresholdProbe:
    """P2PFaaS's threshold-based scheduler: below `threshold` jobs per slot, run here; otherwise probe
    up to `probes` random neighbours one after another and forward to the first below the threshold;
    if none is, run here anyway (the node's own queue absorbs it)."""

    threshold: float = 1.0  # load per slot
    probes: int = 2
    name: str = "threshold-probe"
    pulls_work: ClassVar[bool] = False

    def decide(self, local: LocalState, peers: Peers, rng: random.Random) -> Decision:
        if local.capacity > 0 and local.load < self.threshold * local.capacity and not local.draining:
            return LOCAL
        near = list(peers())
        if not near:
            return LOCAL
        picks = rng.sample(near, min(self.probes, len(near)))
        return Decision(Kind.PROBE, tuple(c.node_id for c in picks), sequential=True)

    def acceptable(self, answer: ProbeAnswer) -> bool:
        return not answer.draining and answer.load < self.threshold * answer.capacity

    def after_probe(self, local: LocalState, answers: Sequence[ProbeAnswer], rng: random.Random) -> Decision:
        for answer in answers:
            if self.acceptable(answer):
                return Decision(Kind.FORWARD, (answer.node_id,))
        if local.draining:
            live = [a for a in answers if not a.draining]
            if live:
                return Decision(Kind.FORWARD, (min(live, key=lambda a: a.load / a.capacity).node_id,))
        return LOCAL


@dataclass
class Gossip(_NoProbe):
    """Ours. Run here while a slot is free. Otherwise draw `d` peers from the gossiped view with
    probability proportional to their estimated free slots (so stale views spread load rather than
    herd), score them by predicted RTT plus a cold-start penalty where the function is not warm, and
    forward conditionally to the best, then the second best; if both refuse, queue here.

    When no peer is believed to have a free slot, the peer with the least expected wait (RTT
    included) gets a forced forward if that beats this node's own queue by `margin_s`.

    `fresh_s` ignores free-slot claims older than that (off by default: measured on the real code,
    it trades fewer refusals for a worse p99 once work pulling runs; docs/benchmarks.md)."""

    d: int = 3
    mean_service_s: float = 0.5
    cold_start_s: float = 0.25
    margin_s: float = 0.05
    tries: int = 2
    fresh_s: float = float("inf")
    name: str = "ours (gossip)"
    pulls_work: ClassVar[bool] = True

    def decide(self, local: LocalState, peers: Peers, rng: random.Random) -> Decision:
        if local.free > 0 and not local.draining:
            return LOCAL
        near = peers()
        roomy = [c for c in near if c.est_free >= 1.0 and c.age_s <= self.fresh_s]
        if roomy:
            picks = _weighted_sample(roomy, [c.est_free for c in roomy], self.d, rng)
            picks.sort(key=self._score)
            return Decision(Kind.FORWARD, tuple(c.node_id for c in picks[: self.tries]), conditional=True)
        if local.draining:
            return _forced_elsewhere(near, self.mean_service_s)
        if not near:
            return LOCAL
        best = min(near, key=self._queued_cost)
        here = _wait_s(local.load, local.capacity, self.mean_service_s)
        if self._queued_cost(best) + self.margin_s < here:
            return Decision(Kind.FORWARD, (best.node_id,))
        return LOCAL

    def _score(self, c: Candidate) -> float:
        return c.rtt_s + (0.0 if c.warm > 0 else self.cold_start_s)

    def _queued_cost(self, c: Candidate) -> float:
        load = c.est_queue + c.capacity - c.est_free
        return _wait_s(load, c.capacity, self.mean_service_s) + self._score(c)


def _weighted_sample(
    items: list[Candidate], weights: list[float], k: int, rng: random.Random
) -> list[Candidate]:
    """`k` distinct items drawn with probability proportional to `weights` (Efraimidis-Spirakis)."""
    if len(items) <= k:
        return list(items)
    keyed = sorted(((rng.random() ** (1.0 / w), i) for i, w in enumerate(weights)), reverse=True)
    return [items[i] for _, i in keyed[:k]]


POLICIES: dict[str, Callable[[], Policy]] = {
    "local-only": LocalOnly,
    "random": RandomForward,
    "nearest": Nearest,
    "power-of-2": PowerOfD,
    "threshold-probe": ThresholdProbe,
    "ours": Gossip,
}


def make_policy(name: str) -> Policy:
    """A policy by its CLI/config name; raises ConfigError (a ValueError) listing the known names."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ConfigError(f"unknown placement policy {name!r}: use one of {', '.join(POLICIES)}") from None
    return cls()

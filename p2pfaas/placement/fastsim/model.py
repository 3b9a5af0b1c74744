"""What the fast simulator models: its configuration and result, the nodes (multi-slot servers
with a FIFO queue, warm functions and a gossiped `LoadView`), and the plane they sit on."""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

from p2pfaas.placement.policy import Decision, Kind
from p2pfaas.placement.view import LoadView, PeerLoad

CLIENT = -1  # a waiter that is the lessee's client, connected to the node directly


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 200
    sizes: tuple[int, ...] = (1, 2, 4, 8, 16)  # slots per node, drawn uniformly
    load: float = 0.9  # arrival rate as a fraction of total capacity
    mean_service_s: float = 0.5
    functions: int = 20
    zipf_s: float = 1.0
    cold_start_s: float = 0.25
    keep_alive_s: float = 60.0
    duration_s: float = 60.0  # arrivals stop then; the run continues until every invocation is done
    warmup_s: float = 10.0  # response times of invocations that arrive earlier are not reported
    gossip_period_s: float = 2.0
    gossip_fanout: int = 2
    relay: int = 8
    near_neighbours: int = 8
    random_neighbours: int = 8
    max_age_s: float = 10.0
    rtt_min_s: float = 0.005
    rtt_span_s: float = 0.1  # RTT across the plane's diagonal, on top of rtt_min_s
    rtt_noise: float = 0.2  # predicted RTT = true RTT times 1 +- this (Vivaldi error)
    detect_s: float = 1.0  # how long until a crash is noticed (connection timeout)
    fault_at_s: float | None = None
    kill_fraction: float = 0.0
    drain_fraction: float = 0.0
    max_rounds: int = 4  # placement rounds at one node before it queues the invocation itself
    seed: int = 1


@dataclass
class SimResult:
    policy: str
    config: SimConfig
    response_s: list[float] = field(default_factory=list)
    invocations: int = 0  # accepted by an entry node
    completed: int = 0
    probes: int = 0  # probe messages plus refused forwards
    forwards: int = 0  # messages that carried an invocation to another node
    client_retries: int = 0
    executions: int = 0
    duplicate_executions: int = 0  # the same id ran on two nodes (after an entry node crashed)
    receipts_refused: int = 0  # the ledger model's refusals of a second receipt for a settled id
    killed: int = 0
    drained: int = 0
    drained_in_time: int = 0

    def quantile(self, q: float) -> float:
        if not self.response_s:
            return float("nan")
        ordered = sorted(self.response_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def lost(self) -> int:
        return self.invocations - self.completed

    def per_invocation(self, count: int) -> float:
        return count / self.invocations if self.invocations else 0.0


class JSQOracle:
    """Join the shortest queue with perfect, instant knowledge (a bound, not a policy)."""

    name = "JSQ oracle"


@dataclass
class Job:
    id: str
    fn: str
    born: float
    measured: bool
    done: bool = False


@dataclass
class Node:
    idx: int
    node_id: str
    capacity: int
    x: float
    y: float
    view: LoadView
    neighbours: list[int] = field(default_factory=list)
    alive: bool = True
    draining: bool = False
    gone: bool = False
    busy: int = 0
    queue: deque[Job] = field(default_factory=deque)
    warm_until: dict[str, float] = field(default_factory=dict)
    held: dict[str, list[int]] = field(default_factory=dict)  # id -> waiters (CLIENT or node idx)
    done_ids: set[str] = field(default_factory=set)
    seq: int = 0
    epoch: int = 0  # bumped on crash: events scheduled before it are void

    @property
    def load(self) -> int:
        return self.busy + len(self.queue)

    @property
    def accepting(self) -> bool:
        return self.alive and not self.draining

    def report(self, now: float) -> PeerLoad:
        """This node's load as its gossip would report it now (a new sequence number)."""
        self.seq += 1
        warm = {fn: 1 for fn, until in self.warm_until.items() if until > now}
        return PeerLoad(
            node_id=self.node_id,
            url="",
            seq=self.seq,
            capacity=self.capacity,
            free_slots=max(0, self.capacity - self.load),
            queue_length=len(self.queue),
            draining=self.draining,
            warm=warm,
            queued={},
            received_at=now,
        )


@dataclass
class Plane:
    """The nodes on their plane: true RTTs, each node's others nearest first, and the functions'
    Zipf popularity. Every node's view starts with the RTTs Vivaldi would predict (with its error)."""

    nodes: list[Node]
    rtt: list[list[float]]
    by_rtt: list[list[int]]
    by_id: dict[str, Node]
    fn_cdf: list[float]

    @property
    def capacity_slots(self) -> int:
        return sum(node.capacity for node in self.nodes)

    @classmethod
    def build(cls, cfg: SimConfig, rng: random.Random) -> Plane:
        nodes: list[Node] = []
        for i in range(cfg.nodes):
            node_id = f"{i:040x}"
            nodes.append(
                Node(
                    idx=i,
                    node_id=node_id,
                    capacity=rng.choice(cfg.sizes),
                    x=rng.random(),
                    y=rng.random(),
                    view=LoadView(self_id=node_id, max_age_s=cfg.max_age_s),
                )
            )
        n = len(nodes)
        rtt = [[_true_rtt(cfg, a, b) for b in nodes] for a in nodes]
        by_rtt: list[list[int]] = []
        for node in nodes:
            by_distance = sorted((j for j in range(n) if j != node.idx), key=lambda j: rtt[node.idx][j])
            by_rtt.append(by_distance)
            chosen = set(by_distance[: cfg.near_neighbours])
            others = [j for j in range(n) if j != node.idx and j not in chosen]
            chosen.update(rng.sample(others, min(cfg.random_neighbours, len(others))))
            node.neighbours = sorted(chosen)
            for j in range(n):
                if j != node.idx:  # predicted RTT, as Vivaldi would give it, with its error
                    noise = 1 + rng.uniform(-cfg.rtt_noise, cfg.rtt_noise)
                    node.view.set_rtt(nodes[j].node_id, rtt[node.idx][j] * noise)
        weights = [1 / (k + 1) ** cfg.zipf_s for k in range(cfg.functions)]
        total = sum(weights)
        fn_cdf = [sum(weights[: k + 1]) / total for k in range(cfg.functions)]
        return cls(nodes, rtt, by_rtt, {node.node_id: node for node in nodes}, fn_cdf)


def _true_rtt(cfg: SimConfig, a: Node, b: Node) -> float:
    if a is b:
        return 0.0
    return cfg.rtt_min_s + cfg.rtt_span_s * math.hypot(a.x - b.x, a.y - b.y) / math.sqrt(2)


def oracle_decision(plane: Plane, accepting: list[Node], node: Node) -> Decision:
    """`JSQOracle`'s choice at `node`: here if it has a free slot, else the nearest node with one, else
    the shortest queue per slot (nearest first among equals)."""
    if node.accepting and node.load < node.capacity:
        return Decision(Kind.LOCAL)
    rtt = plane.rtt[node.idx]
    for j in plane.by_rtt[node.idx]:  # the nearest node with a free slot
        peer = plane.nodes[j]
        if peer.accepting and peer.load < peer.capacity:
            return Decision(Kind.FORWARD, (peer.node_id,))
    live = accepting or [node]
    best = min(live, key=lambda n: ((n.load + 1 - n.capacity) / n.capacity, rtt[n.idx]))
    if best is node:
        return Decision(Kind.LOCAL)
    return Decision(Kind.FORWARD, (best.node_id,))

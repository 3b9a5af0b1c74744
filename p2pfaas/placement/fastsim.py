"""The fast simulator: placement policy cores on an event heap, for hundreds of nodes.

It runs the real `LoadView` and `Policy` cores; what it models instead of running is the rest: each
node is a multi-slot server with a FIFO queue, run times are exponential, a function that has not
run on a node within `keep_alive_s` pays a cold start, every message takes half the RTT between the
two nodes (nodes sit on a plane, RTT grows with distance), and gossip is push-pull every
`gossip_period_s` with `gossip_fanout` neighbours (nearest by RTT plus random DHT-like contacts),
relaying the freshest reports it holds. Reports are not signed here (the node's gossip adapter signs
them); the view is the same code.

Faults: at `fault_at_s`, `kill_fraction` of the nodes crash (their queued and running work is lost
to them; whoever waited on them notices after `detect_s` and places the invocation again, under
the same id; a client whose entry node died retries at another node) and `drain_fraction` drain
(announce it, refuse new work, hand their queue to neighbours, finish what runs, then leave). An
invocation id runs at most once per node (a node that holds it joins the waiter, a node that ran it
answers from its cache) and the ledger model settles each id once: the first receipt pays, later
ones are refused, as the anchor's ledger does.

`JSQOracle` is not a policy a node could run: it sees every node's exact queue and sends the
invocation to the nearest node with a free slot, else to the shortest queue per slot.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from p2pfaas.placement.policy import Decision, Kind, LocalState, Policy, ProbeAnswer
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
class _Job:
    id: str
    fn: str
    born: float
    measured: bool
    done: bool = False


@dataclass
class _Node:
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
    queue: deque[_Job] = field(default_factory=deque)
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


class Simulation:
    """One run of one policy. `run()` returns the result."""

    def __init__(self, config: SimConfig, policy: Policy | JSQOracle) -> None:
        self.cfg = config
        self.policy = policy
        self.rng = random.Random(config.seed)
        self.policy_rng = random.Random(config.seed + 1)
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.result = SimResult(policy=policy.name, config=config)
        self._jobs: dict[str, _Job] = {}
        self._settled: set[str] = set()
        self._ran_on: dict[str, int] = {}
        self._build()

    # --- setup -----------------------------------------------------------------------------------

    def _build(self) -> None:
        cfg, rng = self.cfg, self.rng
        self.nodes: list[_Node] = []
        for i in range(cfg.nodes):
            node_id = f"{i:040x}"
            self.nodes.append(
                _Node(
                    idx=i,
                    node_id=node_id,
                    capacity=rng.choice(cfg.sizes),
                    x=rng.random(),
                    y=rng.random(),
                    view=LoadView(self_id=node_id, max_age_s=cfg.max_age_s),
                )
            )
        n = len(self.nodes)
        self._rtt = [[self._true_rtt(a, b) for b in self.nodes] for a in self.nodes]
        self._by_rtt: list[list[int]] = []
        for node in self.nodes:
            by_distance = sorted((j for j in range(n) if j != node.idx), key=lambda j: self._rtt[node.idx][j])
            self._by_rtt.append(by_distance)
            chosen = set(by_distance[: cfg.near_neighbours])
            others = [j for j in range(n) if j != node.idx and j not in chosen]
            chosen.update(rng.sample(others, min(cfg.random_neighbours, len(others))))
            node.neighbours = sorted(chosen)
            for j in range(n):
                if j != node.idx:  # predicted RTT, as Vivaldi would give it, with its error
                    noise = 1 + rng.uniform(-cfg.rtt_noise, cfg.rtt_noise)
                    node.view.set_rtt(self.nodes[j].node_id, self._rtt[node.idx][j] * noise)
        self._by_id = {node.node_id: node for node in self.nodes}
        weights = [1 / (k + 1) ** cfg.zipf_s for k in range(cfg.functions)]
        total = sum(weights)
        self._fn_cdf = [sum(weights[: k + 1]) / total for k in range(cfg.functions)]
        self._accepting = list(self.nodes)  # entry nodes clients may pick: up and not draining
        self.capacity_slots = sum(node.capacity for node in self.nodes)
        self.arrival_rate = cfg.load * self.capacity_slots / cfg.mean_service_s

    def _true_rtt(self, a: _Node, b: _Node) -> float:
        if a is b:
            return 0.0
        return self.cfg.rtt_min_s + self.cfg.rtt_span_s * math.hypot(a.x - b.x, a.y - b.y) / math.sqrt(2)

    # --- event heap ------------------------------------------------------------------------------

    def _at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn, args))

    def run(self) -> SimResult:
        cfg = self.cfg
        self._at(self.rng.expovariate(self.arrival_rate), self._arrival)
        for node in self.nodes:
            self._at(self.rng.uniform(0, cfg.gossip_period_s), self._gossip, node.idx, node.epoch)
        if cfg.fault_at_s is not None:
            self._at(cfg.fault_at_s, self._faults)
        limit = cfg.duration_s + 3600.0
        while self._heap:
            when, _, fn, args = heapq.heappop(self._heap)
            if when > limit:
                break
            self.now = when
            fn(*args)
            if self.now > cfg.duration_s and self.result.completed == self.result.invocations:
                break
        return self.result

    # --- arrivals and clients ----------------------------------------------------------------------

    def _arrival(self) -> None:
        cfg = self.cfg
        if self.now < cfg.duration_s:
            self._at(self.now + self.rng.expovariate(self.arrival_rate), self._arrival)
        u = self.rng.random()
        fn = next(k for k, edge in enumerate(self._fn_cdf) if u <= edge)
        job = _Job(
            id=f"inv{self.result.invocations}",
            fn=f"{fn:064x}",
            born=self.now,
            measured=cfg.warmup_s <= self.now < cfg.duration_s,
        )
        self._jobs[job.id] = job
        self.result.invocations += 1
        self._client_send(job)

    def _entry(self) -> _Node | None:
        return self.rng.choice(self._accepting) if self._accepting else None

    def _client_send(self, job: _Job) -> None:
        if job.done:
            return
        entry = self._entry()
        if entry is None:  # nobody up: try again later
            self._at(self.now + self.cfg.detect_s, self._client_retry, job)
            return
        self._receive(entry, job, CLIENT)

    def _client_retry(self, job: _Job) -> None:
        if not job.done:
            self.result.client_retries += 1
            self._client_send(job)

    def _complete(self, job: _Job) -> None:
        if job.done:
            return
        job.done = True
        self.result.completed += 1
        if job.measured:
            self.result.response_s.append(self.now - job.born)

    # --- a node receives an invocation (from a client or a peer) -----------------------------------

    def _receive(self, node: _Node, job: _Job, waiter: int) -> None:
        """The invocation is now this node's responsibility (it accepted it)."""
        if job.id in node.done_ids:  # ran here already: answer from the cache
            self._deliver(node, job.id, [waiter])
            return
        if job.id in node.held:  # in progress here: wait for the same run
            node.held[job.id].append(waiter)
            return
        node.held[job.id] = [waiter]
        if waiter == CLIENT:
            self._place(node, job, rounds=0)
        else:  # hop limit 1: a forwarded invocation that was accepted runs (or queues) here
            self._enqueue(node, job)

    def _local_state(self, node: _Node) -> LocalState:
        return LocalState(
            capacity=node.capacity,
            busy=node.busy,
            queued=len(node.queue),
            draining=node.draining,
        )

    def _place(self, node: _Node, job: _Job, rounds: int) -> None:
        if rounds >= self.cfg.max_rounds:
            self._fallback(node, job)
            return
        if isinstance(self.policy, JSQOracle):
            self._apply(node, job, self._oracle(node), rounds)
            return
        decision = self.policy.decide(
            self._local_state(node), lambda: node.view.candidates(self.now, job.fn), self.policy_rng
        )
        self._apply(node, job, decision, rounds)

    def _apply(self, node: _Node, job: _Job, decision: Decision, rounds: int) -> None:
        if decision.kind is Kind.LOCAL:
            if node.draining:
                self._fallback(node, job)
            else:
                self._enqueue(node, job)
        elif decision.kind is Kind.FORWARD:
            self._forward(node, job, list(decision.targets), decision.conditional, rounds)
        else:
            targets = [self._by_id[t] for t in decision.targets]
            self.result.probes += len(targets)
            if decision.sequential:
                self._probe_step(node, job, targets, [], rounds)
            else:
                delay = max(self._rtt[node.idx][t.idx] for t in targets)
                self._at(self.now + delay, self._probed, node.idx, node.epoch, job, targets, rounds)

    def _answer(self, node: _Node, target: _Node) -> ProbeAnswer | None:
        if not target.alive:
            return None
        return ProbeAnswer(
            node_id=target.node_id,
            capacity=target.capacity,
            load=target.load,
            rtt_s=node.view.rtt(target.node_id),
            draining=target.draining,
        )

    def _probed(self, idx: int, epoch: int, job: _Job, targets: list[_Node], rounds: int) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive:
            return
        answers = [a for a in (self._answer(node, t) for t in targets) if a is not None]
        assert not isinstance(self.policy, JSQOracle)
        decision = self.policy.after_probe(self._local_state(node), answers, self.policy_rng)
        self._apply(node, job, decision, rounds + 1)

    def _probe_step(
        self, node: _Node, job: _Job, targets: list[_Node], answers: list[ProbeAnswer], rounds: int
    ) -> None:
        target = targets[len(answers)] if len(answers) < len(targets) else None
        if target is None:
            self._probed_seq(node.idx, node.epoch, job, answers, rounds)
            return
        self._at(
            self.now + self._rtt[node.idx][target.idx],
            self._probe_answer,
            node.idx,
            node.epoch,
            job,
            targets,
            answers,
            rounds,
        )

    def _probe_answer(
        self, idx: int, epoch: int, job: _Job, targets: list[_Node], answers: list[ProbeAnswer], rounds: int
    ) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive:
            return
        assert not isinstance(self.policy, JSQOracle)
        target = targets[len(answers)]
        answer = self._answer(node, target) or ProbeAnswer(target.node_id, 0, 0, 0.0, draining=True)
        answers = [*answers, answer]
        if self.policy.acceptable(answer):
            self._forward(node, job, [target.node_id], False, rounds + 1)
        elif len(answers) < len(targets):
            self._probe_step(node, job, targets, answers, rounds)
        else:
            self._probed_seq(idx, epoch, job, answers, rounds)

    def _probed_seq(self, idx: int, epoch: int, job: _Job, answers: list[ProbeAnswer], rounds: int) -> None:
        node = self.nodes[idx]
        assert not isinstance(self.policy, JSQOracle)
        live = [a for a in answers if a.capacity > 0]
        decision = self.policy.after_probe(self._local_state(node), live, self.policy_rng)
        self._apply(node, job, decision, rounds + 1)

    def _fallback(self, node: _Node, job: _Job) -> None:
        """Nothing placed it: queue it here, or, draining, hand it to any live peer."""
        if not node.draining:
            self._enqueue(node, job)
            return
        live = self._accepting
        if not live:
            self._enqueue(node, job)  # the last node standing keeps it
            return
        target = min(live, key=lambda n: (n.load + 1) / n.capacity + self._rtt[node.idx][n.idx])
        self._forward(node, job, [target.node_id], False, self.cfg.max_rounds)

    # --- forwarding --------------------------------------------------------------------------------

    def _forward(self, node: _Node, job: _Job, targets: list[str], conditional: bool, rounds: int) -> None:
        if not targets:
            if rounds >= self.cfg.max_rounds:
                self._fallback(node, job)
            else:
                self._place(node, job, rounds + 1)
            return
        target = self._by_id[targets[0]]
        node.view.note_sent(target.node_id)
        self.result.forwards += 1
        half = self._rtt[node.idx][target.idx] / 2
        self._at(
            self.now + half,
            self._forward_arrives,
            node.idx,
            node.epoch,
            target.idx,
            job,
            targets,
            conditional,
            rounds,
        )

    def _forward_arrives(
        self, idx: int, epoch: int, tidx: int, job: _Job, targets: list[str], conditional: bool, rounds: int
    ) -> None:
        target = self.nodes[tidx]
        half = self._rtt[idx][tidx] / 2
        refused = (
            not target.alive
            or target.draining
            or (conditional and target.load >= target.capacity and job.id not in target.held)
        )
        if refused:
            self.result.probes += 1
            self._at(self.now + half, self._refused, idx, epoch, job, targets, conditional, rounds)
            return
        self._receive(target, job, idx)

    def _refused(
        self, idx: int, epoch: int, job: _Job, targets: list[str], conditional: bool, rounds: int
    ) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive or job.id not in node.held:
            return
        node.view.note_refused(targets[0])
        rest = targets[1:]
        if rest:
            self._forward(node, job, rest, conditional, rounds)
        else:  # every target refused: ask the policy again (the view now knows they are full)
            self._place(node, job, rounds + 1)

    # --- execution -------------------------------------------------------------------------------

    def _enqueue(self, node: _Node, job: _Job) -> None:
        if node.busy < node.capacity:
            self._start(node, job)
        else:
            node.queue.append(job)

    def _start(self, node: _Node, job: _Job) -> None:
        node.busy += 1
        cold = node.warm_until.get(job.fn, -1.0) <= self.now
        node.warm_until[job.fn] = self.now + self.cfg.keep_alive_s
        run_s = self.rng.expovariate(1 / self.cfg.mean_service_s) + (self.cfg.cold_start_s if cold else 0.0)
        self._at(self.now + run_s, self._finish, node.idx, node.epoch, job)

    def _finish(self, idx: int, epoch: int, job: _Job) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive:
            return
        node.busy -= 1
        node.warm_until[job.fn] = self.now + self.cfg.keep_alive_s
        self.result.executions += 1
        if job.id in self._ran_on:
            self.result.duplicate_executions += 1
        self._ran_on[job.id] = idx
        # The node's receipt reaches the ledger, which settles an invocation id once.
        if job.id in self._settled:
            self.result.receipts_refused += 1
        else:
            self._settled.add(job.id)
        node.done_ids.add(job.id)
        self._deliver(node, job.id, node.held.pop(job.id, []))
        while node.queue and node.busy < node.capacity:
            self._start(node, node.queue.popleft())
        self._maybe_leave(node)

    def _deliver(self, node: _Node, job_id: str, waiters: list[int]) -> None:
        job = self._jobs[job_id]
        for waiter in waiters:
            if waiter == CLIENT:
                self._complete(job)
            else:
                half = self._rtt[node.idx][waiter] / 2
                self._at(self.now + half, self._result_arrives, waiter, self.nodes[waiter].epoch, job_id)

    def _result_arrives(self, idx: int, epoch: int, job_id: str) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive:
            return  # the forwarder crashed: its client notices and retries
        node.done_ids.add(job_id)
        self._deliver(node, job_id, node.held.pop(job_id, []))
        self._maybe_leave(node)

    # --- gossip ----------------------------------------------------------------------------------

    def _report(self, node: _Node) -> PeerLoad:
        node.seq += 1
        warm = {fn: 1 for fn, until in node.warm_until.items() if until > self.now}
        return PeerLoad(
            node_id=node.node_id,
            url="",
            seq=node.seq,
            capacity=node.capacity,
            free_slots=max(0, node.capacity - node.load),
            queue_length=len(node.queue),
            draining=node.draining,
            warm=warm,
            queued={},
            received_at=self.now,
        )

    def _exchange(self, a: _Node, b: _Node) -> None:
        for src, dst in ((a, b), (b, a)):
            dst.view.update(src.node_id, self._report(src))
            for load in src.view.freshest(self.now, self.cfg.relay):
                dst.view.update(load.node_id, load)

    def _gossip(self, idx: int, epoch: int) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive:
            return
        cfg = self.cfg
        node.view.expire(self.now)
        for j in self.rng.sample(node.neighbours, min(cfg.gossip_fanout, len(node.neighbours))):
            peer = self.nodes[j]
            if peer.alive:
                self._exchange(node, peer)
            else:
                node.view.forget(peer.node_id)
        self._at(self.now + cfg.gossip_period_s * self.rng.uniform(0.8, 1.2), self._gossip, idx, epoch)

    # --- faults ----------------------------------------------------------------------------------

    def _faults(self) -> None:
        cfg = self.cfg
        order = list(range(len(self.nodes)))
        self.rng.shuffle(order)
        kill = order[: round(cfg.kill_fraction * len(order))]
        drain = order[len(kill) : len(kill) + round(cfg.drain_fraction * len(order))]
        for idx in kill:
            self._crash(self.nodes[idx])
        for idx in drain:
            self._drain(self.nodes[idx])
        self._accepting = [n for n in self.nodes if n.accepting]

    def _crash(self, node: _Node) -> None:
        self.result.killed += 1
        node.alive = False
        node.epoch += 1
        node.busy = 0
        node.queue.clear()
        held, node.held = node.held, {}
        for job_id, waiters in held.items():
            job = self._jobs[job_id]
            for waiter in waiters:
                if waiter == CLIENT:  # the client's connection broke: it retries elsewhere
                    self._at(self.now + self.cfg.detect_s, self._client_retry, job)
                else:  # the forwarder's request broke: it places the invocation again
                    self._at(
                        self.now + self.cfg.detect_s, self._replace, waiter, self.nodes[waiter].epoch, job
                    )

    def _replace(self, idx: int, epoch: int, job: _Job) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive or job.id not in node.held:
            return
        node.view.forget  # noqa: B018 - the view ages the dead peer out on its own
        self._place(node, job, rounds=0)

    def _drain(self, node: _Node) -> None:
        self.result.drained += 1
        node.draining = True
        for j in node.neighbours:  # announce at once, not at the next gossip round
            peer = self.nodes[j]
            if peer.alive:
                peer.view.update(node.node_id, self._report(node))
        queued, node.queue = list(node.queue), deque()
        for job in queued:  # hand the queue over; the node still relays their results
            self._place(node, job, rounds=0)
        self._maybe_leave(node)

    def _maybe_leave(self, node: _Node) -> None:
        if node.draining and node.alive and not node.held and node.busy == 0 and not node.queue:
            node.alive = False
            node.gone = True
            self.result.drained_in_time += 1

    # --- the oracle ------------------------------------------------------------------------------

    def _oracle(self, node: _Node) -> Decision:
        if node.accepting and node.load < node.capacity:
            return Decision(Kind.LOCAL)
        rtt = self._rtt[node.idx]
        for j in self._by_rtt[node.idx]:  # the nearest node with a free slot
            peer = self.nodes[j]
            if peer.accepting and peer.load < peer.capacity:
                return Decision(Kind.FORWARD, (peer.node_id,))
        live = self._accepting or [node]
        best = min(live, key=lambda n: ((n.load + 1 - n.capacity) / n.capacity, rtt[n.idx]))
        if best is node:
            return Decision(Kind.LOCAL)
        return Decision(Kind.FORWARD, (best.node_id,))


def simulate(config: SimConfig, policy: Policy | JSQOracle) -> SimResult:
    return Simulation(config, policy).run()

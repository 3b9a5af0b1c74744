"""One run of one policy on the fast simulator's event heap (the package's docstring says what it
models): arrivals and clients, an entry node's placement rounds (probes, forwards, refusals), the
nodes' queues and slots, and crashes and drains."""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from p2pfaas.placement.fastsim.gossip import gossip_round
from p2pfaas.placement.fastsim.model import (
    CLIENT,
    Job,
    JSQOracle,
    Node,
    Plane,
    SimConfig,
    SimResult,
    oracle_decision,
)
from p2pfaas.placement.policy import Decision, Kind, LocalState, Policy, ProbeAnswer


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
        self._jobs: dict[str, Job] = {}
        self._settled: set[str] = set()
        self._ran_on: dict[str, int] = {}
        self.plane = Plane.build(config, self.rng)
        self.nodes = self.plane.nodes
        self._rtt, self._by_rtt, self._by_id = self.plane.rtt, self.plane.by_rtt, self.plane.by_id
        self._fn_cdf = self.plane.fn_cdf
        self._accepting = list(self.nodes)  # entry nodes clients may pick: up and not draining
        self.capacity_slots = self.plane.capacity_slots
        self.arrival_rate = config.load * self.capacity_slots / config.mean_service_s

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
        job = Job(
            id=f"inv{self.result.invocations}",
            fn=f"{fn:064x}",
            born=self.now,
            measured=cfg.warmup_s <= self.now < cfg.duration_s,
        )
        self._jobs[job.id] = job
        self.result.invocations += 1
        self._client_send(job)

    def _entry(self) -> Node | None:
        return self.rng.choice(self._accepting) if self._accepting else None

    def _client_send(self, job: Job) -> None:
        if job.done:
            return
        entry = self._entry()
        if entry is None:  # nobody up: try again later
            self._at(self.now + self.cfg.detect_s, self._client_retry, job)
            return
        self._receive(entry, job, CLIENT)

    def _client_retry(self, job: Job) -> None:
        if not job.done:
            self.result.client_retries += 1
            self._client_send(job)

    def _complete(self, job: Job) -> None:
        if job.done:
            return
        job.done = True
        self.result.completed += 1
        if job.measured:
            self.result.response_s.append(self.now - job.born)

    # --- a node receives an invocation (from a client or a peer) -----------------------------------

    def _receive(self, node: Node, job: Job, waiter: int) -> None:
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

    def _local_state(self, node: Node) -> LocalState:
        return LocalState(
            capacity=node.capacity,
            busy=node.busy,
            queued=len(node.queue),
            draining=node.draining,
        )

    def _place(self, node: Node, job: Job, rounds: int) -> None:
        if rounds >= self.cfg.max_rounds:
            self._fallback(node, job)
            return
        if isinstance(self.policy, JSQOracle):
            self._apply(node, job, oracle_decision(self.plane, self._accepting, node), rounds)
            return
        decision = self.policy.decide(
            self._local_state(node), lambda: node.view.candidates(self.now, job.fn), self.policy_rng
        )
        self._apply(node, job, decision, rounds)

    def _apply(self, node: Node, job: Job, decision: Decision, rounds: int) -> None:
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

    def _answer(self, node: Node, target: Node) -> ProbeAnswer | None:
        if not target.alive:
            return None
        return ProbeAnswer(
            node_id=target.node_id,
            capacity=target.capacity,
            load=target.load,
            rtt_s=node.view.rtt(target.node_id),
            draining=target.draining,
        )

    def _probed(self, idx: int, epoch: int, job: Job, targets: list[Node], rounds: int) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive:
            return
        answers = [a for a in (self._answer(node, t) for t in targets) if a is not None]
        assert not isinstance(self.policy, JSQOracle)
        decision = self.policy.after_probe(self._local_state(node), answers, self.policy_rng)
        self._apply(node, job, decision, rounds + 1)

    def _probe_step(
        self, node: Node, job: Job, targets: list[Node], answers: list[ProbeAnswer], rounds: int
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
        self, idx: int, epoch: int, job: Job, targets: list[Node], answers: list[ProbeAnswer], rounds: int
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

    def _probed_seq(self, idx: int, epoch: int, job: Job, answers: list[ProbeAnswer], rounds: int) -> None:
        node = self.nodes[idx]
        assert not isinstance(self.policy, JSQOracle)
        live = [a for a in answers if a.capacity > 0]
        decision = self.policy.after_probe(self._local_state(node), live, self.policy_rng)
        self._apply(node, job, decision, rounds + 1)

    def _fallback(self, node: Node, job: Job) -> None:
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

    def _forward(self, node: Node, job: Job, targets: list[str], conditional: bool, rounds: int) -> None:
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
        self, idx: int, epoch: int, tidx: int, job: Job, targets: list[str], conditional: bool, rounds: int
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
        self, idx: int, epoch: int, job: Job, targets: list[str], conditional: bool, rounds: int
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

    def _enqueue(self, node: Node, job: Job) -> None:
        if node.busy < node.capacity:
            self._start(node, job)
        else:
            node.queue.append(job)

    def _start(self, node: Node, job: Job) -> None:
        node.busy += 1
        cold = node.warm_until.get(job.fn, -1.0) <= self.now
        node.warm_until[job.fn] = self.now + self.cfg.keep_alive_s
        run_s = self.rng.expovariate(1 / self.cfg.mean_service_s) + (self.cfg.cold_start_s if cold else 0.0)
        self._at(self.now + run_s, self._finish, node.idx, node.epoch, job)

    def _finish(self, idx: int, epoch: int, job: Job) -> None:
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

    def _deliver(self, node: Node, job_id: str, waiters: list[int]) -> None:
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

    # --- gossip (fastsim/gossip.py) ---------------------------------------------------------------

    def _gossip(self, idx: int, epoch: int) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive:
            return
        cfg = self.cfg
        gossip_round(node, self.nodes, cfg, self.rng, self.now)
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

    def _crash(self, node: Node) -> None:
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

    def _replace(self, idx: int, epoch: int, job: Job) -> None:
        node = self.nodes[idx]
        if node.epoch != epoch or not node.alive or job.id not in node.held:
            return
        node.view.forget  # noqa: B018 - the view ages the dead peer out on its own
        self._place(node, job, rounds=0)

    def _drain(self, node: Node) -> None:
        self.result.drained += 1
        node.draining = True
        for j in node.neighbours:  # announce at once, not at the next gossip round
            peer = self.nodes[j]
            if peer.alive:
                peer.view.update(node.node_id, node.report(self.now))
        queued, node.queue = list(node.queue), deque()
        for job in queued:  # hand the queue over; the node still relays their results
            self._place(node, job, rounds=0)
        self._maybe_leave(node)

    def _maybe_leave(self, node: Node) -> None:
        if node.draining and node.alive and not node.held and node.busy == 0 and not node.queue:
            node.alive = False
            node.gone = True
            self.result.drained_in_time += 1


def simulate(config: SimConfig, policy: Policy | JSQOracle) -> SimResult:
    return Simulation(config, policy).run()

"""Local-or-forward: where an invocation that reached this node runs (issue #6).

`Router` sits between the node's HTTP API and `NodeService`. For an invocation from a client it asks
the placement policy (p2pfaas/placement/policy.py) with this node's exact load and the gossiped view:
run here while there is a free slot, else probe and/or forward to a neighbour, with a hop limit; a
refused or failed forward is tried elsewhere. An invocation forwarded to us runs here (or is refused,
when the sender allowed that and we have no free slot). Forwards reuse the lessee's signed request
unchanged, wrapped in a `ForwardRequest` signed by this node.

Exactly once per node: an invocation id runs at most once here (`p2pfaas.node.once`). A second
arrival while it is in progress (a client retrying) shares the same future; one that arrives after it
finished gets the cached, node-signed result (bounded by count and age).

Work that waits for a local slot waits in the router's own FIFO queue, so that it can still leave:

- Work pulling. Gossip says how many slots a peer has free *now* only for an instant: on a node of a
  few slots a free slot lasts a fraction of a service time, and a report is seconds old by the time
  another node acts on it. So the node with room says so itself, at the moment it has room: when a
  slot frees here and nothing waits, `on_room` fires (the placement layer sends this node's fresh
  report to the neighbour that reported the longest queue); and a node that receives a report with
  free slots while invocations wait here hands the longest-waiting ones to that peer (`offer`), as
  conditional forwards. A refused hand-off goes back to the head of the queue. This is the
  join-idle-queue / work-stealing idea (Lu et al. 2011; Blumofe & Leiserson 1999) on top of gossip.
- Draining hands every queued invocation to neighbours instead of running it; `drain()` also refuses
  new work and waits for what runs.

A node that runs several worker processes on one port (p2pfaas/node/workers/) has one router per
process. Exactly once then holds node-wide through the shared table of invocation ids
(p2pfaas/node/shared/, `once.claim_node_wide`): an id claimed by a sibling is waited for there and
its result read from the table. A worker's router runs what fits in its share of the slots and
hands the rest to the primary process's router when the primary has room or knows a peer with room
(`primary`), which places it with the node's gossiped view; the primary reports the whole node's
load and drains its siblings with itself (`siblings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from p2pfaas import codec, logfmt, signing
from p2pfaas.errors import Busy, P2PFaaSError, Refused, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Delegation, InvokeRequest, InvokeResult
from p2pfaas.node.forwarding import Forwarding
from p2pfaas.node.once import OnceTable, Phase, claim_node_wide, same_invocation
from p2pfaas.node.service import NodeService
from p2pfaas.node.shared.invocations import InvocationTable
from p2pfaas.node.slots import HandOff, LocalSlots
from p2pfaas.node.stats import RouterStats
from p2pfaas.placement.policy import Decision, Gossip, Kind, LocalState, Policy, ProbeAnswer
from p2pfaas.placement.view import LoadView
from p2pfaas.placement.wire import MAX_HOPS, ForwardRequest

log = logging.getLogger(__name__)

# url, forward -> the executing node's result; raises Busy/Refused when refused, Unreachable when gone
SendForward = Callable[[str, ForwardRequest], Awaitable[InvokeResult]]
# url -> the peer's exact load now (a gossip exchange), or None when it does not answer
Probe = Callable[[str], Awaitable[ProbeAnswer | None]]


class Primary(Protocol):
    """The node's primary process, as a worker's router sees it (a worker has no view of peers)."""

    def has_room(self) -> bool:
        """Whether the primary has a free slot, or knows a peer with one."""
        ...

    async def place(self, request: InvokeRequest, hops: int, chain: tuple[Delegation, ...]) -> InvokeResult:
        """Place an invocation this worker claimed: on the primary's slots, its queue, or a peer."""
        ...


class Siblings(Protocol):
    """The node's other worker processes, as the primary's router sees them."""

    def load(self) -> tuple[int, int, int]:
        """(slots, free slots, queue length) summed over the siblings."""
        ...

    async def drain(self, *, deadline_s: float) -> bool:
        """Make every sibling stop taking work and finish what it has; True if all did in time."""
        ...


@dataclass
class Router:
    """Driven by the node app's /v1/invoke and /v1/forward handlers and by `drain()`."""

    service: NodeService
    keys: KeyPair
    view: LoadView
    send_forward: SendForward
    probe: Probe | None = None
    policy: Policy = field(default_factory=Gossip)
    rng: random.Random = field(default_factory=random.Random)
    hop_limit: int = 2
    max_rounds: int = 3
    result_cache_size: int = 10_000
    result_ttl_s: float = 600.0
    stats: RouterStats = field(default_factory=RouterStats)
    draining: bool = False
    paused: str = ""  # why its owner does not lend it now (node/lending.py); draining is set too
    # Called when a slot frees here and nothing waits, under a policy that pulls work (the placement
    # layer tells a loaded peer).
    on_room: Callable[[], None] | None = None
    # Several worker processes on one port: the node-wide exactly-once table and this process's
    # index in it; a worker's primary process; the primary's view of its siblings.
    shared: InvocationTable | None = None
    worker: int = 0
    primary: Primary | None = None
    siblings: Siblings | None = None
    once: OnceTable = field(init=False)
    # A paid invocation forwarded to us: the delegations that brought it (its receipt carries them).
    _chains: dict[str, tuple[Delegation, ...]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[InvokeResult]] = field(default_factory=set)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    slots: LocalSlots = field(init=False)
    forwarding: Forwarding = field(init=False)

    def __post_init__(self) -> None:
        self.slots = LocalSlots(capacity=lambda: self.capacity)
        self.forwarding = Forwarding(self)
        self.once = OnceTable(cache_size=self.result_cache_size, ttl_s=self.result_ttl_s)

    # --- load, as gossip reports it ----------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.service.admission.limits.slots

    def free_slots(self) -> int:
        if self.slots.waiting:
            return 0
        return max(0, min(self.service.admission.free_slots(), self.capacity - self.slots.running))

    def queue_length(self) -> int:
        return len(self.slots.waiting) + self.service.admission.queue_length()

    def node_load(self) -> tuple[int, int, int]:
        """(slots, free slots, queue length) of the whole node: this process's and its siblings'."""
        slots, free, queued = self.capacity, self.free_slots(), self.queue_length()
        if self.siblings is not None:
            more = self.siblings.load()
            slots, free, queued = slots + more[0], free + more[1], queued + more[2]
        return slots, free, queued

    def queued_by_digest(self) -> dict[str, int]:
        return self.slots.by_digest()

    def in_progress(self) -> int:
        return len(self.once)

    def knows(self, invocation_id: str) -> bool:
        """Whether this invocation id is running, waiting or done here."""
        return self.once.knows(invocation_id)

    # --- entry points ----------------------------------------------------------------------------

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        """An invocation from a client: place it."""
        with logfmt.bind(invocation=request.invocation_id):
            return await self._once(request, hops=0, must_accept=True)

    async def forwarded(self, forward: ForwardRequest) -> InvokeResult:
        """An invocation a peer forwarded to us. Raises Busy to refuse it."""
        signing.verify(forward)  # the forwarding node vouches for the hop count
        with logfmt.bind(invocation=forward.request.invocation_id, hops=str(forward.hops)):
            return await self._once(
                forward.request, hops=forward.hops, must_accept=forward.must_accept, chain=forward.chain
            )

    async def _once(
        self, request: InvokeRequest, *, hops: int, must_accept: bool, chain: tuple[Delegation, ...] = ()
    ) -> InvokeResult:
        # Never place or forward a request the lessee did not sign (checked once; the service reuses it).
        self.service.verify_request(request)
        loop = asyncio.get_running_loop()
        self.once.expire(loop.time())  # before `knows`: an id past its TTL is claimed node-wide again
        if self.shared is not None and not self.once.knows(request.invocation_id):
            settled, joined = await claim_node_wide(self.shared, request, worker=self.worker, hops=hops)
            self.stats.joined += joined
            if settled is not None:
                self.stats.cached += 1
                return settled
        entry = self.once.lookup(request, now=loop.time())
        if entry is not None and entry.phase is Phase.DONE:
            assert entry.result is not None
            self.stats.cached += 1
            return same_invocation(request, entry.result)
        if entry is not None and entry.phase is Phase.FORWARDING and hops > 0:
            # We are waiting on a peer for this very invocation, and it (or a node it passed it to,
            # e.g. by work pulling) sends it back: joining would wait on ourselves.
            raise Busy("invocation is being placed from this node")
        if entry is not None:
            assert entry.task is not None
            self.stats.joined += 1
            return same_invocation(request, await asyncio.shield(entry.task))
        refusal = ""
        if hops > 0 and self.draining:
            refusal = "node is draining"
        elif hops > 0 and not must_accept and self.free_slots() <= 0:
            refusal = f"no free slot ({self.capacity} busy, {self.queue_length()} queued)"
        if refusal:
            if self.shared is not None:  # the id claimed above is free again: a sibling may run it
                self.shared.finish(request.invocation_id, None, worker=self.worker, now=loop.time())
            raise Busy(refusal)
        if chain:
            self._chains[request.invocation_id] = chain
        task = loop.create_task(self._handle(request, hops))
        self.once.start(request, task)
        self._track(task)
        task.add_done_callback(lambda t: self._finished(request.invocation_id, t))
        return await asyncio.shield(task)

    def _finished(self, invocation_id: str, task: asyncio.Task[InvokeResult]) -> None:
        self._chains.pop(invocation_id, None)
        result = task.result() if not task.cancelled() and task.exception() is None else None
        now = asyncio.get_running_loop().time()
        if self.shared is not None:  # the sibling processes' copy of the outcome
            self.shared.finish(
                invocation_id, None if result is None else codec.encode(result), worker=self.worker, now=now
            )
        self.once.finish(invocation_id, result, now=now)
        self._untrack(task)

    def _track(self, task: asyncio.Task[InvokeResult]) -> None:
        """`task` runs an invocation here: `drain` waits for it (until `_untrack`)."""
        self._tasks.add(task)
        self._idle.clear()

    def _untrack(self, task: asyncio.Task[InvokeResult]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def place_for_sibling(
        self, request: InvokeRequest, hops: int, chain: tuple[Delegation, ...] = ()
    ) -> InvokeResult:
        """An invocation a sibling worker claimed but has no slot for: place it like one of ours.
        The sibling holds the id in the shared table, so it is not claimed again here."""
        self.service.verify_request(request)
        self.stats.from_siblings += 1
        if chain:
            self._chains[request.invocation_id] = chain
        task = asyncio.get_running_loop().create_task(self._handle(request, hops))
        self._track(task)
        task.add_done_callback(lambda t: self._sibling_done(request.invocation_id, t))
        return await asyncio.shield(task)

    def chain_of(self, invocation_id: str) -> tuple[Delegation, ...]:
        """The delegations that brought paid invocation `invocation_id` to this node (none: sent here)."""
        return self._chains.get(invocation_id, ())

    def _sibling_done(self, invocation_id: str, task: asyncio.Task[InvokeResult]) -> None:
        self._chains.pop(invocation_id, None)
        if not task.cancelled():
            task.exception()  # the sibling got it through the shielded await
        self._untrack(task)

    # --- placement -------------------------------------------------------------------------------

    async def _handle(self, request: InvokeRequest, hops: int) -> InvokeResult:
        target: str | None = None
        while True:
            try:
                if target is None:
                    return await self._place(request, hops)
                return await self._pull_to(request, hops, target)
            except HandOff as handoff:
                # It waited in our queue and is leaving it: for a peer that reported room, or
                # (target None) because we are draining: then it is placed again.
                target = handoff.target

    async def _pull_to(self, request: InvokeRequest, hops: int, target: str) -> InvokeResult:
        result = await self.forwarding.forward(
            request, hops, Decision(Kind.FORWARD, (target,), conditional=True)
        )
        if result is not None:
            self.stats.pulled += 1
            return result
        self.stats.pull_refused += 1
        return await self._run_local(request, hops, front=True)  # back to where it waited

    async def _place(self, request: InvokeRequest, hops: int) -> InvokeResult:
        if (
            self.primary is not None
            and not self.draining
            and self.free_slots() <= 0
            and self.primary.has_room()
        ):
            try:  # a worker process without room: the primary places it with the node's view
                return await self.primary.place(request, hops, self.chain_of(request.invocation_id))
            except Refused as exc:
                if exc.status != 503:
                    raise
                log.debug("the primary process is full too; %s waits here", request.invocation_id)
            except Unreachable as exc:
                log.warning(
                    "the primary process did not take %s (%s); it waits here", request.invocation_id, exc
                )
        if self.primary is not None:  # nobody has room: it waits here, as it would at the primary
            return await self._run_local(request, hops)
        if hops > 0 and not self.draining:
            return await self._run_local(request, hops)
        loop = asyncio.get_running_loop()
        for _round in range(self.max_rounds):
            if hops >= self.hop_limit:
                break
            local = self._local_state()
            decision = self.policy.decide(
                local, lambda: self.view.candidates(loop.time(), request.digest), self.rng
            )
            if decision.kind is Kind.PROBE:
                decision = await self.forwarding.probe(request, local, decision)
            if decision.kind is Kind.LOCAL and not self.draining:
                return await self._run_local(request, hops)
            if decision.kind is Kind.FORWARD:
                result = await self.forwarding.forward(request, hops, decision)
                if result is not None:
                    return result
        if self.paused and hops == 0:  # its lessee tries another node: refused, not lost
            raise Busy(f"this node does not lend now ({self.paused}): try another")
        # Nobody else took it (or the hop limit is reached): it runs here, even while draining,
        # rather than being lost.
        return await self._run_local(request, hops)

    def _local_state(self) -> LocalState:
        busy = self.capacity - self.free_slots() if not self.slots.waiting else self.capacity
        return LocalState(
            capacity=self.capacity,
            busy=max(0, busy),
            queued=self.queue_length(),
            draining=self.draining,
        )

    # --- the local queue -------------------------------------------------------------------------

    async def _run_local(self, request: InvokeRequest, hops: int, *, front: bool = False) -> InvokeResult:
        await self.slots.acquire(request, hops, front=front)  # returns with a slot reserved for us
        self.stats.local += 1
        try:
            return await self.service.invoke(request, delegations=self.chain_of(request.invocation_id))
        finally:
            self.slots.release()
            if (
                self.on_room is not None
                and self.policy.pulls_work
                and not self.slots.waiting
                and not self.draining
            ):
                self.on_room()

    def offer(self, node_id: str, free_slots: int) -> int:
        """Peer `node_id` has just reported `free_slots` free slots: hand it up to that many of the
        invocations that have waited longest here. Returns how many left the queue."""
        if self.draining or not self.policy.pulls_work or self.view.get(node_id) is None:
            return 0
        return self.slots.hand_off(node_id, free_slots, max_hops=MAX_HOPS)

    # --- draining --------------------------------------------------------------------------------

    async def drain(
        self, *, deadline_s: float, announce: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Stop taking work, announce it, hand queued invocations to neighbours, and wait up to
        `deadline_s` for the rest. True if everything finished in time."""
        self.draining = True
        if announce is not None:
            with contextlib.suppress(P2PFaaSError):
                await announce()
        queued = self.slots.take_all()
        for item in queued:
            self.stats.handed_off += 1
            if not item.future.done():
                # Its waiter re-runs placement (which now never picks this node).
                item.future.set_exception(HandOff())
        waits: list[Awaitable[object]] = [asyncio.wait_for(self._idle_wait(), deadline_s)]
        if self.siblings is not None:
            waits.append(self.siblings.drain(deadline_s=deadline_s))
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        return all(outcome is None or outcome is True for outcome in outcomes)

    async def _idle_wait(self) -> None:
        while self._tasks:
            self._idle.clear()
            await self._idle.wait()

"""Exactly once per node: which invocation ids this process has seen, and in which phase each is.

An id runs at most once here. The router (`p2pfaas.node.router`) asks `OnceTable.lookup` before it
places anything: an id unknown here is new; one RUNNING here (waiting for a slot, running, or out on a
forward) is joined, its caller sharing the same future; one FORWARDING (out on a forward from here
right now) that a peer sends back is refused, since joining would wait on itself; one DONE gets the
cached, node-signed result (kept for `ttl_s`, at most `cache_size` of them). Only the lessee who
chose an id gets its result: another request under a known id is refused (409).

A node of several worker processes (p2pfaas/node/workers/) claims each new id node-wide first,
in the shared table (p2pfaas/node/shared/), whose `ClaimKind` says the same of the sibling
processes: `claim_node_wide` waits for a sibling's result, or says the id is this process's to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from p2pfaas import codec, signing
from p2pfaas.errors import Busy, Refused, SignatureError
from p2pfaas.messages import InvokeRequest, InvokeResult
from p2pfaas.node.shared.invocations import ClaimKind, InvocationTable

__all__ = ["Entry", "OnceTable", "Phase", "claim_node_wide", "same_invocation"]

SIBLING_POLL_S = (0.002, 0.05)  # waiting for an id a sibling process runs: first and longest pause
SIBLING_GRACE_S = 30.0  # ... and how long past the invocation's timeout before giving up


class Phase(enum.Enum):
    RUNNING = "running"  # placed here: waiting for a slot, running, or being placed
    FORWARDING = "forwarding"  # out on a forward from here right now
    DONE = "done"  # finished here: `result` is its node-signed answer


@dataclass
class Entry:
    owner: tuple[bytes, str]  # (lessee key, function digest) of the request that chose the id
    phase: Phase
    task: asyncio.Future[InvokeResult] | None = None  # while RUNNING or FORWARDING
    result: InvokeResult | None = None  # once DONE
    finished_at: float = 0.0


@dataclass
class OnceTable:
    """The ids of this process: live ones (RUNNING, FORWARDING) and the DONE ones still kept."""

    cache_size: int = 10_000
    ttl_s: float = 600.0
    _live: dict[str, Entry] = field(default_factory=dict)
    # Oldest finished first. Not cachetools' TTLCache: callers pass `now` (no timer to give it), and
    # ids go in the order they finished, where TTLCache's size eviction would go by last lookup.
    _done: OrderedDict[str, Entry] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        """How many ids are live here."""
        return len(self._live)

    def knows(self, invocation_id: str) -> bool:
        """Whether this invocation id is live or done here."""
        return invocation_id in self._live or invocation_id in self._done

    def lookup(self, request: InvokeRequest, *, now: float) -> Entry | None:
        """The entry of `request`'s id, or None when it is new here. Raises Refused (409) when the
        id is another lessee's or another function's (ids are 128 random bits, but a node that saw
        one must not be able to read or replay another lessee's invocation)."""
        self.expire(now)
        entry = self._live.get(request.invocation_id) or self._done.get(request.invocation_id)
        if entry is not None and entry.owner != (request.signer, request.digest):
            raise Refused("invocation id already used by another request", status=409)
        return entry

    def start(self, request: InvokeRequest, task: asyncio.Future[InvokeResult]) -> None:
        self._live[request.invocation_id] = Entry((request.signer, request.digest), Phase.RUNNING, task)

    @contextlib.contextmanager
    def forwarding(self, invocation_id: str) -> Iterator[None]:
        """While the body runs, the id is out on a forward from here (FORWARDING), then RUNNING again."""
        entry = self._live.get(invocation_id)
        if entry is not None:
            entry.phase = Phase.FORWARDING
        try:
            yield
        finally:
            if entry is not None and entry.phase is Phase.FORWARDING:
                entry.phase = Phase.RUNNING

    def finish(self, invocation_id: str, result: InvokeResult | None, *, now: float) -> None:
        """The id's task ended: with `result` it is DONE (kept); without, it is forgotten, so the
        lessee may try it again."""
        entry = self._live.pop(invocation_id, None)
        if entry is None or result is None:
            return
        entry.phase, entry.task, entry.result, entry.finished_at = Phase.DONE, None, result, now
        self._done[invocation_id] = entry
        while len(self._done) > self.cache_size:
            self._done.popitem(last=False)

    def expire(self, now: float) -> None:
        """Forget the DONE ids kept longer than `ttl_s`."""
        while self._done:
            entry = next(iter(self._done.values()))
            if now - entry.finished_at <= self.ttl_s:
                return
            self._done.popitem(last=False)


async def claim_node_wide(
    shared: InvocationTable, request: InvokeRequest, *, worker: int, hops: int
) -> tuple[InvokeResult | None, bool]:
    """Claim `request`'s id in the node-wide table. (None, joined): it is this process's to run, or
    already runs here; (result, joined): the answer a sibling process gave it, waited for while it
    ran. `joined` says whether it was found running in a sibling."""
    loop = asyncio.get_running_loop()
    owner = request.signer + request.digest.encode()
    pause_s, joined = SIBLING_POLL_S[0], False
    give_up_at = loop.time() + request.timeout_s + SIBLING_GRACE_S
    while True:
        claim = shared.claim(request.invocation_id, owner, worker=worker, now=loop.time())
        if claim.kind is ClaimKind.NEW or (claim.kind is ClaimKind.RUNNING and claim.worker == worker):
            return None, joined
        if claim.kind is ClaimKind.WRONG_OWNER:
            raise Refused("invocation id already used by another request", status=409)
        if claim.kind is ClaimKind.LOST:
            raise Refused("this invocation ran here but its result was lost; use a new id", status=410)
        if claim.kind is ClaimKind.DONE:
            return same_invocation(request, codec.decode_as(InvokeResult, claim.result)), joined
        if hops > 0:  # a forward of an id a sibling runs (or places): joining could wait on ourselves
            raise Busy("invocation is being placed from this node")
        joined = True
        if loop.time() > give_up_at:  # its process hangs (or died and was not yet replaced)
            raise Busy(f"invocation still runs in worker process {claim.worker} of this node")
        await asyncio.sleep(pause_s)  # duplicates are rare: polling the table costs nothing else
        pause_s = min(2 * pause_s, SIBLING_POLL_S[1])


def same_invocation(request: InvokeRequest, result: InvokeResult) -> InvokeResult:
    """`result`, once it verifies as a node's answer to `request`'s very invocation."""
    signing.verify(result)
    if result.invocation_id != request.invocation_id or result.digest != request.digest:
        raise SignatureError("a peer answered a different invocation")
    return result

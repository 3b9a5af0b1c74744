"""Admission: a node never runs more invocations, or more memory, than its volunteer lends.

`Capacity` is the sans-I/O core: slots and memory in use against the limits, taken and given back
per invocation. `Admission` wraps it for the node: `async with admission.slot(...)` runs at once
while there is room, waits in a bounded FIFO queue while there is not (the wait counts against the
invocation's own timeout), and refuses at once with `errors.Busy` when the queue is full, naming a
peer with room when the `suggest_peer` hook knows one.

CPU is not counted here: the cores a node lends are a quota shared by all its instances (the Docker
executor puts them under one parent cgroup with that quota), so more concurrent invocations share
the cores rather than exceed them. Warm but idle instances' memory is the executor's to bound
(`memory_cap_mb`); this module bounds what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from p2pfaas.errors import Busy, ConfigError, Refused


@dataclass(frozen=True)
class Limits:
    """What a volunteer lends: `slots` concurrent invocations within `memory_mb`; `queue_size` may wait."""

    slots: int = 4
    memory_mb: int = 2048
    queue_size: int = 64

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ConfigError(f"slots must be at least 1, got {self.slots}")
        if self.memory_mb < 16:
            raise ConfigError(f"memory must be at least 16 MB, got {self.memory_mb}")
        if self.queue_size < 0:
            raise ConfigError(f"queue size must not be negative, got {self.queue_size}")


class Capacity:
    """Slots and memory in use; sans-I/O. Invariant: 0 <= used <= limit for both."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.slots_used = 0
        self.memory_used_mb = 0

    def fits(self, memory_mb: int) -> bool:
        """Whether an invocation needing `memory_mb` could ever run here."""
        return 0 < memory_mb <= self.limits.memory_mb

    def has_room(self, memory_mb: int) -> bool:
        return (
            self.slots_used < self.limits.slots and self.memory_used_mb + memory_mb <= self.limits.memory_mb
        )

    def take(self, memory_mb: int) -> None:
        assert self.has_room(memory_mb), "take() without room"
        self.slots_used += 1
        self.memory_used_mb += memory_mb

    def give_back(self, memory_mb: int) -> None:
        assert self.slots_used > 0 and self.memory_used_mb >= memory_mb, "give_back() without take()"
        self.slots_used -= 1
        self.memory_used_mb -= memory_mb

    @property
    def free_slots(self) -> int:
        return self.limits.slots - self.slots_used


class PeerEstimate(Protocol):
    """What `peer_with_room` needs to know of a peer (a placement `Candidate` fits)."""

    @property
    def url(self) -> str: ...

    @property
    def est_free(self) -> float: ...

    @property
    def rtt_s(self) -> float: ...


def peer_with_room(peers: Iterable[PeerEstimate]) -> str | None:
    """The peer with the most estimated free slots (the nearest among equals), or None if none has any:
    the best guess a "busy" answer can name."""
    best = max((p for p in peers if p.est_free > 0), key=lambda p: (p.est_free, -p.rtt_s), default=None)
    return best.url if best is not None else None


@dataclass
class _Waiter:
    digest: str
    memory_mb: int
    future: asyncio.Future[None]


class Admission:
    """The node's gate in front of its executor. Driven by `NodeService.invoke`, one `slot` per run."""

    def __init__(self, limits: Limits, *, suggest_peer: Callable[[], str | None] | None = None) -> None:
        self.capacity = Capacity(limits)
        self.suggest_peer = suggest_peer
        self._queue: deque[_Waiter] = deque()
        self._running: dict[str, int] = {}  # digest -> invocations holding a slot

    @property
    def limits(self) -> Limits:
        return self.capacity.limits

    def free_slots(self) -> int:
        return self.capacity.free_slots

    def queue_length(self, digest: str | None = None) -> int:
        return sum(1 for w in self._queue if digest is None or w.digest == digest)

    def running_digests(self) -> list[str]:
        return list(self._running)

    def has_room(self, memory_mb: int) -> bool:
        """Whether an invocation needing `memory_mb` would run now, without queueing."""
        return not self._queue and self.capacity.has_room(memory_mb)

    def slot(self, digest: str, memory_mb: int, *, timeout_s: float) -> _Slot:
        """Hold a slot and `memory_mb` for the body of `async with`. Raises `Busy` if no room comes
        within `timeout_s` or the queue is full, `Refused` (413) if this node could never give
        `memory_mb`. (A class, not a generator context manager: this runs once per invocation.)"""
        return _Slot(self, digest, memory_mb, timeout_s)

    async def _enter(self, digest: str, memory_mb: int, *, timeout_s: float) -> None:
        await self._acquire(digest, memory_mb, timeout_s=timeout_s)
        self._running[digest] = self._running.get(digest, 0) + 1

    def _exit(self, digest: str, memory_mb: int) -> None:
        self._running[digest] -= 1
        if not self._running[digest]:
            del self._running[digest]
        self.capacity.give_back(memory_mb)
        self._pump()

    async def _acquire(self, digest: str, memory_mb: int, *, timeout_s: float) -> None:
        if not self.capacity.fits(memory_mb):
            raise Refused(
                f"the function needs {memory_mb} MB; this node lends {self.limits.memory_mb} MB in all",
                status=413,
            )
        if self.has_room(memory_mb):  # FIFO: nobody overtakes the queue
            self.capacity.take(memory_mb)
            return
        if len(self._queue) >= self.limits.queue_size:
            raise self._busy(f"all {self.limits.slots} slots busy and the queue is full")
        waiter = _Waiter(digest, memory_mb, asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout_s)
        except TimeoutError:
            pass
        except BaseException:  # cancelled: if it was admitted meanwhile, hand the room on
            self._withdraw(waiter)
            raise
        if waiter.future.done():
            return  # admitted (possibly just as the timeout fired)
        self._withdraw(waiter)
        raise self._busy(f"no slot became free within {timeout_s:g} s")

    def _withdraw(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(waiter)
        if waiter.future.done():
            self.capacity.give_back(waiter.memory_mb)
        else:
            waiter.future.cancel()
        self._pump()  # a large head leaving may let smaller ones in

    def _pump(self) -> None:
        """Admit queued invocations in order while the head fits."""
        while self._queue:
            head = self._queue[0]
            if head.future.done():
                self._queue.popleft()
                continue
            if not self.capacity.has_room(head.memory_mb):
                return
            self._queue.popleft()
            self.capacity.take(head.memory_mb)
            head.future.set_result(None)

    def _busy(self, why: str) -> Busy:
        peer = self.suggest_peer() if self.suggest_peer is not None else None
        return Busy(
            f"node busy: {why} ({self.capacity.slots_used}/{self.limits.slots} slots, "
            f"{self.capacity.memory_used_mb}/{self.limits.memory_mb} MB, {len(self._queue)} queued)",
            peer=peer or "",
        )


class _Slot:
    """`async with admission.slot(...)`: a slot held for the body."""

    __slots__ = ("_admission", "_digest", "_memory_mb", "_timeout_s")

    def __init__(self, admission: Admission, digest: str, memory_mb: int, timeout_s: float) -> None:
        self._admission = admission
        self._digest = digest
        self._memory_mb = memory_mb
        self._timeout_s = timeout_s

    async def __aenter__(self) -> None:
        await self._admission._enter(self._digest, self._memory_mb, timeout_s=self._timeout_s)

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission._exit(self._digest, self._memory_mb)

"""Warm-pool policy: which instance serves an invocation, when to start one, when to reap one.

Sans-I/O: no asyncio, no clock, no Docker. `WarmPool` feeds it events with `now` (the loop's
time) and acts on its decisions, so the simulator and unit tests can drive it directly.

The policy is deliberately simple, and later issues replace it (keep-alive learned from the
idle-time histogram, forecast pre-warming): per function, start instances on demand from zero
up to `max_per_function`; reuse the most recently released idle instance (so the others age
out); reap an instance idle for `keep_alive_s`. It has no node-wide cap: admission against the
node's advertised capacity is the node's job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from p2pfaas.errors import LocalError


class Decision(enum.Enum):
    REUSE = "reuse"  # run on the idle instance `instance_id`
    START = "start"  # start `instance_id` (already counted as busy) and run on it
    WAIT = "wait"  # the function is at its cap: wait for a release or a discard


class InstanceState(enum.Enum):
    BUSY = "busy"  # starting, or running an invocation
    IDLE = "idle"


@dataclass(frozen=True)
class Acquired:
    decision: Decision
    instance_id: str = ""


@dataclass
class _Tracked:
    digest: str
    state: InstanceState
    idle_since: float


class WarmPoolPolicy:
    """Driven by the pool: `acquire` per invocation, then `release` or `discard`; `expired` on a timer."""

    def __init__(self, *, max_per_function: int, keep_alive_s: float) -> None:
        if max_per_function < 1 or keep_alive_s < 0:
            raise LocalError("need max_per_function >= 1 and keep_alive_s >= 0")
        self.max_per_function = max_per_function
        self.keep_alive_s = keep_alive_s
        self._tracked: dict[str, _Tracked] = {}
        self._idle: dict[str, list[str]] = {}  # per digest, a stack: most recently released last
        self._count: dict[str, int] = {}  # per digest, busy + idle

    def acquire(self, digest: str, now: float, *, new_id: str) -> Acquired:
        """Pick an idle instance, or start `new_id` if under the cap, or say wait."""
        idle = self._idle.get(digest)
        if idle:
            instance_id = idle.pop()
            self._tracked[instance_id].state = InstanceState.BUSY
            return Acquired(Decision.REUSE, instance_id)
        if self._count.get(digest, 0) >= self.max_per_function:
            return Acquired(Decision.WAIT)
        if new_id in self._tracked:
            raise LocalError(f"instance id {new_id!r} is already in use")
        self._tracked[new_id] = _Tracked(digest, InstanceState.BUSY, now)
        self._count[digest] = self._count.get(digest, 0) + 1
        return Acquired(Decision.START, new_id)

    def release(self, instance_id: str, now: float) -> None:
        """The instance finished an invocation and is healthy: it becomes idle."""
        tracked = self._get(instance_id)
        if tracked.state is not InstanceState.BUSY:
            raise LocalError(f"release of {instance_id!r}, which is {tracked.state.value}")
        tracked.state = InstanceState.IDLE
        tracked.idle_since = now
        self._idle.setdefault(tracked.digest, []).append(instance_id)

    def discard(self, instance_id: str) -> str:
        """Forget a busy instance (it failed, or was destroyed); returns its digest."""
        tracked = self._get(instance_id)
        if tracked.state is not InstanceState.BUSY:
            raise LocalError(f"discard of {instance_id!r}, which is {tracked.state.value}")
        self._forget(instance_id, tracked)
        return tracked.digest

    def expired(self, now: float) -> list[str]:
        """Forget and return the instances idle for at least `keep_alive_s`; the caller destroys them."""
        deadline = now - self.keep_alive_s
        gone = [
            instance_id
            for instance_id, tracked in self._tracked.items()
            if tracked.state is InstanceState.IDLE and tracked.idle_since <= deadline
        ]
        for instance_id in gone:
            tracked = self._tracked[instance_id]
            self._idle[tracked.digest].remove(instance_id)
            self._forget(instance_id, tracked)
        return gone

    def count(self, digest: str) -> int:
        return self._count.get(digest, 0)

    def idle_count(self, digest: str) -> int:
        return len(self._idle.get(digest, ()))

    def state(self, instance_id: str) -> InstanceState | None:
        tracked = self._tracked.get(instance_id)
        return tracked.state if tracked else None

    def _get(self, instance_id: str) -> _Tracked:
        tracked = self._tracked.get(instance_id)
        if tracked is None:
            raise LocalError(f"unknown instance {instance_id!r}")
        return tracked

    def _forget(self, instance_id: str, tracked: _Tracked) -> None:
        del self._tracked[instance_id]
        self._count[tracked.digest] -= 1
        assert self._count[tracked.digest] >= 0
        if not self._count[tracked.digest]:
            del self._count[tracked.digest]
            self._idle.pop(tracked.digest, None)

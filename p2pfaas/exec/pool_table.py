"""The warm-pool policy's table: the instances it tracks, busy or idle, and per function their
counts, free slots and timing marks; node-wide, the memory they hold.

Sans-I/O, like the policy (`pool_policy.py`) that alone drives it. It keeps the books (an instance
made busy, added, forgotten; an unknown one raises) and decides nothing: which instance serves a
call, when one expires or is pre-warmed, what to evict, are the policy's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from p2pfaas.errors import LocalError


class InstanceState(enum.Enum):
    BUSY = "busy"  # booting, or running at least one invocation
    IDLE = "idle"


@dataclass
class Tracked:
    """One instance."""

    digest: str
    state: InstanceState
    since: float  # when it became busy or idle
    memory_mb: int
    in_use: int = 0  # invocations running on it (up to the function's concurrency)
    prewarming: bool = False  # booting for a pre-warm, not for an invocation
    expires_at: float = float("inf")


@dataclass
class FunctionInstances:
    """One function's instances and what the policy remembers of its calls."""

    memory_mb: int = 0
    concurrency: int = 1  # invocations one instance may serve at once (from the manifest)
    count: int = 0  # busy + idle instances
    invoking: int = 0  # invocations running, over all its instances
    idle: list[str] = field(default_factory=list)  # a stack: most recently released last
    partial: list[str] = field(default_factory=list)  # running some but fewer than `concurrency`
    booting: list[str] = field(default_factory=list)  # pre-warms not booted nor claimed yet
    last_end: float | None = None  # when its last invocation ended with none left running
    prewarm_at: float | None = None
    prewarm_until: float = 0.0


class PoolTable:
    """Driven by `WarmPoolPolicy` only."""

    def __init__(self) -> None:
        self.tracked: dict[str, Tracked] = {}
        self.functions: dict[str, FunctionInstances] = {}
        self.memory_used_mb = 0

    def add(self, instance_id: str, digest: str, fn: FunctionInstances, now: float) -> Tracked:
        """A new instance of `fn`, busy from `now` (booting), holding the function's memory."""
        tracked = self.tracked[instance_id] = Tracked(digest, InstanceState.BUSY, now, fn.memory_mb)
        fn.count += 1
        self.memory_used_mb += fn.memory_mb
        return tracked

    def busy(self, instance_id: str, fn: FunctionInstances, now: float) -> None:
        """One more invocation runs on the instance."""
        tracked = self.tracked[instance_id]
        if tracked.state is InstanceState.IDLE:
            tracked.state = InstanceState.BUSY
            tracked.since = now
        tracked.in_use += 1
        fn.invoking += 1
        # A manifest may lower the concurrency while an instance runs more: it just takes no more.
        if tracked.in_use < fn.concurrency:
            if instance_id not in fn.partial:
                fn.partial.append(instance_id)
        elif instance_id in fn.partial:
            fn.partial.remove(instance_id)

    def get(self, instance_id: str) -> Tracked:
        tracked = self.tracked.get(instance_id)
        if tracked is None:
            raise LocalError(f"unknown instance {instance_id!r}")
        return tracked

    def forget(self, instance_id: str, tracked: Tracked) -> None:
        """The instance is gone; so is its function's record once nothing of it is left to remember."""
        del self.tracked[instance_id]
        fn = self.functions[tracked.digest]
        fn.count -= 1
        self.memory_used_mb -= tracked.memory_mb
        assert fn.count >= 0 and self.memory_used_mb >= 0
        if fn.count == 0 and fn.prewarm_at is None and fn.last_end is None and not fn.invoking:
            del self.functions[tracked.digest]

    def count(self, digest: str) -> int:
        fn = self.functions.get(digest)
        return fn.count if fn else 0

    def idle_count(self, digest: str) -> int:
        fn = self.functions.get(digest)
        return len(fn.idle) if fn else 0

    def state(self, instance_id: str) -> InstanceState | None:
        tracked = self.tracked.get(instance_id)
        return tracked.state if tracked else None

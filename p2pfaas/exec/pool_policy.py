"""Warm-pool policy: which instance serves an invocation, when to start, pre-warm, evict or reap one.

Sans-I/O: no asyncio, no clock, no Docker. `WarmPool` (and the trace-replay benchmark, on a simulated
clock) feed it events with `now` and act on its decisions, so it is testable alone.
Its books (the instances, busy or idle, per function, and the memory they hold) are `pool_table.py`.

Per function: instances start on demand from zero up to `max_per_function`; an invocation goes to
an instance with a free slot (a function's manifest may let one instance serve `concurrency`
invocations at once), preferring a busy one, then the most recently released idle one (so the
others age out); an idle instance is reaped when its keep-alive deadline passes, and pools shrink
to zero. The deadline of a function's *last* instance comes from a keep-alive policy
(`keepalive.py`: the hybrid histogram policy of Shahrad et al., ATC'20, or a fixed keep-alive),
fed with the function's idle times (gaps with none of its invocations running; overlapping calls
are concurrency, not idleness). When the learned pre-warm window is positive, that instance is
unloaded as soon as it goes idle and one is loaded again when the window has passed. Instances
beyond the last serve bursts, which the histogram says nothing about: they keep the fixed
keep-alive. An optional `ArrivalForecast` keeps as many instances as the forecast concurrency
needs, starting them at interval boundaries before a predicted burst, and protects them from reaping.

Node-wide, the instances' memory stays within `memory_cap_mb` (0: no cap): a start that would
exceed it evicts idle instances of other functions, soonest-to-expire first, or waits. Admission of
invocations against the node's lent cores and slots is the node's job (`node/admission.py`).
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from p2pfaas.errors import LocalError
from p2pfaas.exec.forecast import ArrivalForecast
from p2pfaas.exec.keepalive import FixedKeepAlive, HybridHistogramPolicy, Windows
from p2pfaas.exec.pool_table import FunctionInstances, InstanceState, PoolTable, Tracked


class KeepAlivePolicy(Protocol):
    def observe_idle(self, digest: str, idle_s: float) -> None: ...

    def windows(self, digest: str) -> Windows: ...

    def forget(self, digest: str) -> None: ...


def node_defaults(keep_alive_s: float) -> tuple[KeepAlivePolicy, ArrivalForecast]:
    """What a node's pool runs with unless told otherwise: the hybrid histogram policy held to the
    fixed keep-alive's memory (`keep_alive_s`, also its fallback), and a one-minute forecast."""
    return (
        HybridHistogramPolicy(fallback_keep_alive_s=keep_alive_s, memory_budget=True),
        ArrivalForecast(interval_s=60.0),
    )


class Decision(enum.Enum):
    REUSE = "reuse"  # run on the idle instance `instance_id`
    START = "start"  # start `instance_id` (already counted as busy) and run on it
    WAIT = "wait"  # at the function's cap, or no memory: wait for a release or a discard


@dataclass(frozen=True)
class Acquired:
    decision: Decision
    instance_id: str = ""
    evict: tuple[str, ...] = ()  # idle instances forgotten to make room: the caller destroys them


class WarmPoolPolicy:
    """Driven by the pool: `acquire` per invocation, then `release` or `discard`; `expired` and
    `prewarm` when `next_deadline()` comes."""

    def __init__(
        self,
        *,
        max_per_function: int,
        keep_alive_s: float = 600.0,
        keep_alive: KeepAlivePolicy | None = None,
        forecast: ArrivalForecast | None = None,
        memory_cap_mb: int = 0,
    ) -> None:
        if max_per_function < 1 or keep_alive_s < 0 or memory_cap_mb < 0:
            raise LocalError("need max_per_function >= 1, keep_alive_s >= 0 and memory_cap_mb >= 0")
        self.max_per_function = max_per_function
        self.keep_alive: KeepAlivePolicy = keep_alive or FixedKeepAlive(keep_alive_s)
        self.forecast = forecast
        self.extra_keep_alive_s = keep_alive_s
        self.memory_cap_mb = memory_cap_mb
        self._table = PoolTable()
        self._expiries: list[tuple[float, str]] = []  # heap; stale entries are skipped
        self._prewarms: list[tuple[float, str]] = []  # heap of (when, digest); likewise
        self._next_forecast_at = 0.0 if forecast is not None else float("inf")

    @property
    def keep_alive_s(self) -> float:
        """The fixed keep-alive: the fallback's, and the one of instances beyond a function's last."""
        return self.extra_keep_alive_s

    # --- invocations ----------------------------------------------------------------------------

    def acquire(
        self,
        digest: str,
        now: float,
        *,
        new_id: str,
        memory_mb: int = 0,
        concurrency: int = 1,
        arrival: bool = True,
    ) -> Acquired:
        """Pick an instance with a free slot (a busy one first, packing invocations so the others
        age out, then the most recently idle), or start `new_id` if under the caps, or say wait.
        A REUSE may name an instance still booting for an earlier START: the caller waits for it.
        `arrival` is False when the same invocation asks again after waiting (observed once)."""
        if concurrency < 1:
            raise LocalError(f"concurrency must be >= 1, got {concurrency}")
        fn = self._table.functions.setdefault(digest, FunctionInstances())
        fn.memory_mb = memory_mb or fn.memory_mb
        fn.concurrency = concurrency
        if arrival:
            self._observe_arrival(digest, fn, now)
        if fn.partial:
            instance_id = fn.partial[-1]
            self._table.busy(instance_id, fn, now)
            return Acquired(Decision.REUSE, instance_id)
        if fn.idle:
            instance_id = fn.idle.pop()
            self._table.busy(instance_id, fn, now)
            return Acquired(Decision.REUSE, instance_id)
        if fn.booting:  # a pre-warm nearly up beats a cold start from nothing: wait for it
            instance_id = fn.booting.pop()
            self._table.busy(instance_id, fn, now)
            return Acquired(Decision.REUSE, instance_id)
        if fn.count >= self.max_per_function:
            return Acquired(Decision.WAIT)
        if new_id in self._table.tracked:
            raise LocalError(f"instance id {new_id!r} is already in use")
        evict = self._make_room(fn.memory_mb, keep=digest)
        if evict is None:
            return Acquired(Decision.WAIT)
        self._table.add(new_id, digest, fn, now)
        self._table.busy(new_id, fn, now)
        return Acquired(Decision.START, new_id, evict)

    def booted(self, instance_id: str, now: float) -> None:
        """A pre-warmed instance is up. Unless an invocation claimed it while it booted, it idles
        until the end of the window it was loaded for (or its keep-alive, if longer)."""
        tracked = self._table.get(instance_id)
        if not tracked.prewarming:
            raise LocalError(f"booted() of {instance_id!r}, which was not pre-warming")
        tracked.prewarming = False
        fn = self._table.functions[tracked.digest]
        if instance_id in fn.booting:
            fn.booting.remove(instance_id)
        if tracked.in_use:
            return  # its invocations release it
        windows = self.keep_alive.windows(tracked.digest)
        self._idle(instance_id, tracked, fn, now, max(fn.prewarm_until, now + windows.keep_alive_s))

    def release(self, instance_id: str, now: float, *, run_s: float | None = None) -> None:
        """One invocation on the instance finished (it ran `run_s`; default: since the instance
        became busy) and the instance is healthy. Idle once nothing runs on it."""
        tracked = self._table.get(instance_id)
        if tracked.state is not InstanceState.BUSY or not tracked.in_use:
            raise LocalError(f"release of {instance_id!r}, which runs nothing")
        fn = self._table.functions[tracked.digest]
        if tracked.in_use:
            tracked.in_use -= 1
            fn.invoking -= 1
            if self.forecast is not None:
                ran_s = now - tracked.since if run_s is None else run_s
                self.forecast.observe_run(tracked.digest, ran_s, now)
            if tracked.in_use:  # others still run on it: it has a free slot again
                if instance_id not in fn.partial:
                    fn.partial.append(instance_id)
                return
            if instance_id in fn.partial:
                fn.partial.remove(instance_id)
        windows = self.keep_alive.windows(tracked.digest)
        if fn.invoking == 0 and windows.prewarm_s > 0 and fn.count == 1:
            # Hybrid policy: unload now, load again when the pre-warm window has passed.
            expires_at = now
            fn.prewarm_at = now + windows.prewarm_s
            fn.prewarm_until = fn.prewarm_at + windows.keep_alive_s
            heapq.heappush(self._prewarms, (fn.prewarm_at, tracked.digest))
        elif fn.invoking > 0 or len(fn.idle) > 0:
            expires_at = now + self.extra_keep_alive_s
        else:
            expires_at = now + windows.prewarm_s + windows.keep_alive_s
        if fn.invoking == 0:
            fn.last_end = now
        self._idle(instance_id, tracked, fn, now, expires_at)

    def _idle(
        self, instance_id: str, tracked: Tracked, fn: FunctionInstances, now: float, expires_at: float
    ) -> None:
        tracked.state = InstanceState.IDLE
        tracked.since = now
        tracked.expires_at = expires_at
        heapq.heappush(self._expiries, (expires_at, instance_id))
        fn.idle.append(instance_id)
        if len(self._expiries) > 2 * len(self._table.tracked) + 64:
            # Every release pushes an entry and a reuse makes it stale; under steady load stale
            # ones would pile up for a whole keep-alive (a million at 2,000 calls/s for 10 min).
            self._expiries = [
                (t.expires_at, i) for i, t in self._table.tracked.items() if t.state is InstanceState.IDLE
            ]
            heapq.heapify(self._expiries)

    def discard(self, instance_id: str, now: float | None = None) -> str:
        """Forget a busy instance (it failed, or was destroyed); returns its digest."""
        tracked = self._table.get(instance_id)
        if tracked.state is not InstanceState.BUSY:
            raise LocalError(f"discard of {instance_id!r}, which is {tracked.state.value}")
        fn = self._table.functions[tracked.digest]
        if instance_id in fn.booting:
            fn.booting.remove(instance_id)
        if tracked.in_use:
            fn.invoking -= tracked.in_use
            if instance_id in fn.partial:
                fn.partial.remove(instance_id)
            if fn.invoking == 0 and now is not None:
                fn.last_end = now
        self._table.forget(instance_id, tracked)
        return tracked.digest

    # --- timers ---------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When `expired` or `prewarm` next has something to do (inf: nothing scheduled)."""
        candidates = [self._next_forecast_at]
        if self._expiries:
            candidates.append(self._expiries[0][0])
        if self._prewarms:
            candidates.append(self._prewarms[0][0])
        return min(candidates)

    def expired(self, now: float) -> list[str]:
        """Forget and return the idle instances past their keep-alive; the caller destroys them."""
        gone: list[str] = []
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, instance_id = heapq.heappop(self._expiries)
            tracked = self._table.tracked.get(instance_id)
            if tracked is None or tracked.state is not InstanceState.IDLE or tracked.expires_at != expires_at:
                continue  # stale: reused or gone since
            fn = self._table.functions[tracked.digest]
            if self.forecast is not None and fn.count <= self._forecast_instances(tracked.digest, fn, now):
                tracked.expires_at = now + self.forecast.interval_s  # the forecast still needs it
                heapq.heappush(self._expiries, (tracked.expires_at, instance_id))
                continue
            fn.idle.remove(instance_id)
            self._table.forget(instance_id, tracked)
            gone.append(instance_id)
        return gone

    def prewarm(self, now: float, new_id: Callable[[], str]) -> list[tuple[str, str]]:
        """Instances to start now, as (digest, instance id); each is counted busy until the caller
        `release`s it once booted (or `discard`s it if booting failed)."""
        starts: list[tuple[str, str]] = []
        while self._prewarms and self._prewarms[0][0] <= now:
            at, digest = heapq.heappop(self._prewarms)
            fn = self._table.functions.get(digest)
            if fn is None or fn.prewarm_at != at:
                continue
            fn.prewarm_at = None
            if fn.count == 0:
                starts.extend(self._start_prewarmed(digest, fn, 1, now, new_id))
        if self.forecast is not None and now >= self._next_forecast_at:
            interval_s = self.forecast.interval_s
            self._next_forecast_at = (now // interval_s + 1) * interval_s
            for digest in self.forecast.digests():
                fn = self._table.functions.get(digest)
                if fn is None:
                    continue
                wanted = min(self._forecast_instances(digest, fn, now), self.max_per_function)
                if wanted > fn.count:
                    starts.extend(self._start_prewarmed(digest, fn, wanted - fn.count, now, new_id))
        return starts

    # --- scaling by hand (local placement) --------------------------------------------------------

    def prewarm_now(
        self,
        digest: str,
        count: int,
        now: float,
        new_id: Callable[[], str],
        *,
        memory_mb: int,
        concurrency: int = 1,
    ) -> list[str]:
        """Instances to start so `digest` has `count` (within `max_per_function` and the memory cap,
        evicting nothing); the caller `release`s each once booted, or `discard`s it."""
        if count < 0 or concurrency < 1:
            raise LocalError("need count >= 0 and concurrency >= 1")
        fn = self._table.functions.setdefault(digest, FunctionInstances())
        fn.memory_mb = memory_mb or fn.memory_mb
        fn.concurrency = concurrency
        wanted = min(count, self.max_per_function) - fn.count
        return [i for _, i in self._start_prewarmed(digest, fn, max(wanted, 0), now, new_id)]

    def drop_idle(self, digest: str) -> list[str]:
        """Forget and return `digest`'s idle instances, and any pending pre-warm of it."""
        fn = self._table.functions.get(digest)
        if fn is None:
            return []
        fn.prewarm_at = None
        gone = list(fn.idle)
        for instance_id in gone:
            fn.idle.remove(instance_id)
            self._table.forget(instance_id, self._table.tracked[instance_id])
        return gone

    # --- introspection --------------------------------------------------------------------------

    @property
    def memory_used_mb(self) -> int:
        """What the instances hold node-wide."""
        return self._table.memory_used_mb

    def count(self, digest: str) -> int:
        return self._table.count(digest)

    def idle_count(self, digest: str) -> int:
        return self._table.idle_count(digest)

    def total_count(self) -> int:
        return len(self._table.tracked)

    def state(self, instance_id: str) -> InstanceState | None:
        return self._table.state(instance_id)

    def digest_of(self, instance_id: str) -> str:
        return self._table.get(instance_id).digest

    # --- internals ------------------------------------------------------------------------------

    def _observe_arrival(self, digest: str, fn: FunctionInstances, now: float) -> None:
        # An idle time is a gap with none of the function's invocations running (section 4.2 of the
        # paper: from the end of one execution to the start of the next); overlapping arrivals are
        # concurrency, which the forecast handles, not idleness.
        if fn.invoking == 0 and fn.last_end is not None:
            self.keep_alive.observe_idle(digest, now - fn.last_end)
        fn.prewarm_at = None  # the arrival came first: a pending pre-warm is moot
        if self.forecast is not None:
            self.forecast.observe_arrival(digest, now)

    def _forecast_instances(self, digest: str, fn: FunctionInstances, now: float) -> int:
        assert self.forecast is not None
        return -(-self.forecast.wanted(digest, now) // fn.concurrency)

    def _start_prewarmed(
        self, digest: str, fn: FunctionInstances, n: int, now: float, new_id: Callable[[], str]
    ) -> list[tuple[str, str]]:
        starts = []
        for _ in range(n):
            if self.memory_cap_mb and self._table.memory_used_mb + fn.memory_mb > self.memory_cap_mb:
                break  # a pre-warm never evicts: only demand does
            instance_id = new_id()
            if instance_id in self._table.tracked:
                raise LocalError(f"instance id {instance_id!r} is already in use")
            self._table.add(instance_id, digest, fn, now).prewarming = True
            fn.booting.append(instance_id)
            starts.append((digest, instance_id))
        return starts

    def _make_room(self, memory_mb: int, *, keep: str) -> tuple[str, ...] | None:
        """Idle instances of other functions to evict so `memory_mb` fits, or None if it cannot."""
        if not self.memory_cap_mb or self._table.memory_used_mb + memory_mb <= self.memory_cap_mb:
            return ()
        if memory_mb > self.memory_cap_mb:
            return None
        candidates = sorted(
            (t.expires_at, instance_id)
            for instance_id, t in self._table.tracked.items()
            if t.state is InstanceState.IDLE and t.digest != keep
        )
        free = self.memory_cap_mb - self._table.memory_used_mb
        chosen: list[str] = []
        for _, instance_id in candidates:
            if free >= memory_mb:
                break
            chosen.append(instance_id)
            free += self._table.tracked[instance_id].memory_mb
        if free < memory_mb:
            return None
        for instance_id in chosen:
            tracked = self._table.tracked[instance_id]
            self._table.functions[tracked.digest].idle.remove(instance_id)
            self._table.forget(instance_id, tracked)
        return tuple(chosen)

"""An executor that models run time instead of running code: for the simulator and many-node tests.

`ModelExecutor` answers each invocation after a modelled delay on the loop's clock: a run time
drawn from an exponential distribution around `mean_run_s`, plus `cold_start_s` when no warm
instance of the function was free, with a bounded number of concurrent slots. The output is the
payload wrapped as `{"echo": payload}`, so callers can check that results reach the right
invocation. Randomness comes from the injected `random.Random`.

Instances are modelled like the warm pool's (p2pfaas/exec/warm_pool.py), so placement's local
scaling behaves in simulation as on a real node: an instance serves up to the manifest's
`concurrency` invocations at once, stays warm for `keep_alive_s` after its last use, and
`prewarm` boots instances ahead of demand (taking `cold_start_s` of loop time, outside the run
slots); an invocation arriving while one boots claims it and waits out the rest of its boot (as
cold as that boot), `release` drops idle instances, `warm_digests` counts booted ones. Memory
limits are not modelled: instances are bounded only by keep-alive, `release`, and `slots` (a
pre-warm never exceeds the number of invocations the node can run at once).

Metering is modelled too: CPU time is the run time times `cpu_share` (a CPU-bound function uses
its whole core), peak memory `memory_share` of the manifest's limit, so receipts and prices can be
studied in simulation.

It never executes the bundle: it is not a sandbox and must never serve real lessees.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field

from p2pfaas.errors import InvokeTimeout
from p2pfaas.exec.base import ExecResult, FunctionSpec


@dataclass(eq=False)
class _Instance:
    """One modelled instance: booted once `ready_at` has passed."""

    ready_at: float  # loop time its (modelled) boot completes
    last_used: float  # loop time it last went idle, or booted
    busy: int = 0  # invocations it is serving now


@dataclass
class ModelExecutor:
    """Driven by the node's `invoke` calls; time passes only through `asyncio.sleep` on the loop."""

    rng: random.Random
    mean_run_s: float = 0.05
    cold_start_s: float = 0.4
    keep_alive_s: float = 600.0
    slots: int = 4
    cpu_share: float = 1.0
    memory_share: float = 0.5
    kind: str = "model (simulated, runs no code)"
    sandboxed: bool = False
    invocations: int = 0
    prewarmed: int = 0  # instances booted by `prewarm`
    _instances: dict[str, list[_Instance]] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.slots)

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        assert self._slots is not None, "start() the executor first"
        loop = asyncio.get_running_loop()
        async with self._slots:
            instance, cold = self._checkout(fn, loop.time())
            run_s = self.rng.expovariate(1.0 / self.mean_run_s)
            boot_s = max(0.0, instance.ready_at - loop.time())
            total_s = run_s + boot_s
            if total_s > timeout_s:  # as a real executor would: kill the instance at the deadline
                await asyncio.sleep(timeout_s)
                self._remove(fn.digest, instance)
                raise InvokeTimeout(f"modelled run of {total_s:.3f} s exceeded {timeout_s:g} s")
            await asyncio.sleep(total_s)
            instance.busy -= 1
            instance.last_used = loop.time()
            self.invocations += 1
        output = json.dumps({"echo": json.loads(payload)}, separators=(",", ":")).encode()
        return ExecResult(
            ok=True,
            output=output,
            duration_s=run_s,
            cold=cold,
            cpu_s=run_s * self.cpu_share,
            peak_memory_bytes=int(fn.memory_mb * self.memory_share * 1024 * 1024),
        )

    # --- local scaling, for placement (the same hooks as the pooled executors) --------------------

    def warm_digests(self) -> dict[str, int]:
        """Booted instances per function (busy or idle): where an invocation would start warm."""
        now = asyncio.get_running_loop().time()
        counts: dict[str, int] = {}
        for digest, instances in self._live(now).items():
            booted = sum(1 for i in instances if i.ready_at <= now)
            if booted:
                counts[digest] = booted
        return counts

    async def prewarm(self, fn: FunctionSpec, count: int) -> None:
        """Have at least `count` instances of `fn` (at most `slots`); returns once the ones started
        here have booted. They then age out under `keep_alive_s`, like any other instance."""
        if count < 0:
            raise ValueError(f"prewarm count must be >= 0, not {count}")
        now = asyncio.get_running_loop().time()
        have = len(self._live(now).get(fn.digest, []))
        new = max(0, min(count, self.slots) - have)
        if new == 0:
            return
        ready_at = now + self.cold_start_s
        instances = self._instances.setdefault(fn.digest, [])
        instances.extend(_Instance(ready_at=ready_at, last_used=ready_at) for _ in range(new))
        self.prewarmed += new
        await asyncio.sleep(self.cold_start_s)

    def release(self, digest: str) -> None:
        """Drop the function's idle booted instances now (busy ones finish first, then age out)."""
        now = asyncio.get_running_loop().time()
        kept = [i for i in self._instances.get(digest, []) if i.busy or i.ready_at > now]
        if kept:
            self._instances[digest] = kept
        else:
            self._instances.pop(digest, None)

    async def aclose(self) -> None:
        self._instances.clear()

    # --- the instance model -----------------------------------------------------------------------

    def _live(self, now: float) -> dict[str, list[_Instance]]:
        """Forget instances idle past their keep-alive (a pool's reaper would have destroyed them)."""
        for digest in list(self._instances):
            live = [
                i
                for i in self._instances[digest]
                if i.busy or i.ready_at > now or now - i.last_used <= self.keep_alive_s
            ]
            if live:
                self._instances[digest] = live
            else:
                del self._instances[digest]
        return self._instances

    def _checkout(self, fn: FunctionSpec, now: float) -> tuple[_Instance, bool]:
        """A booted instance with room (warm), else one still booting (as cold as its boot), else a
        new one (cold)."""
        instances = self._live(now).setdefault(fn.digest, [])
        room = [i for i in instances if i.busy < max(1, fn.concurrency)]
        booted = [i for i in room if i.ready_at <= now]
        if booted:
            instance, cold = max(booted, key=lambda i: i.last_used), False  # most recently used
        elif room:
            instance, cold = min(room, key=lambda i: i.ready_at), True
        else:
            instance = _Instance(ready_at=now + self.cold_start_s, last_used=now + self.cold_start_s)
            instances.append(instance)
            cold = True
        instance.busy += 1
        return instance, cold

    def _remove(self, digest: str, instance: _Instance) -> None:
        instances = self._instances.get(digest, [])
        if instance in instances:
            instances.remove(instance)
        if not instances:
            self._instances.pop(digest, None)

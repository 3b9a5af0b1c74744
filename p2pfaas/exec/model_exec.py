"""An executor that models run time instead of running code: for the simulator and many-node tests.

`ModelExecutor` answers each invocation after a modelled delay on the loop's clock: a cold start
the first time a function runs (and after its instance has idled past `keep_alive_s`), then a run
time drawn from an exponential distribution around `mean_run_s`, with a bounded number of
concurrent slots. The output is the payload wrapped as `{"echo": payload}`, so callers can check
that results reach the right invocation. Randomness comes from the injected `random.Random`.
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
    _last_used: dict[str, float] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.slots)

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        assert self._slots is not None, "start() the executor first"
        loop = asyncio.get_running_loop()
        async with self._slots:
            last = self._last_used.get(fn.digest)
            cold = last is None or loop.time() - last > self.keep_alive_s
            run_s = self.rng.expovariate(1.0 / self.mean_run_s)
            total_s = run_s + (self.cold_start_s if cold else 0.0)
            if total_s > timeout_s:  # as a real executor would: kill at the deadline
                await asyncio.sleep(timeout_s)
                self._last_used.pop(fn.digest, None)
                raise InvokeTimeout(f"modelled run of {total_s:.3f} s exceeded {timeout_s:g} s")
            await asyncio.sleep(total_s)
            self._last_used[fn.digest] = loop.time()
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

    async def aclose(self) -> None:
        self._last_used.clear()

"""Warm instances of functions and the invocation flow shared by the Docker and process executors.

`WarmPool` owns instances (containers or processes, behind the small `Instance` protocol), asks
`WarmPoolPolicy` which one serves an invocation, runs it over the instance's shim connection and
turns failures into the `Executor` error contract (see `exec/base.py`):
- no answer within `timeout_s`: the instance is destroyed, `InvokeTimeout`;
- the function raised `MemoryError`, or the instance died and `Instance.diagnose` says it was
  for memory: the instance is destroyed, `MemoryExceeded`;
- the connection broke otherwise: the instance is destroyed, `ExecutorError` saying why.
A destroyed instance is replaced by a fresh one on the next invocation.

Each invocation is metered by the instance's `Meter` (cgroup or /proc counters, `metering.py`)
and its CPU time and peak memory are returned in the `ExecResult`.

It does not know how instances are started (the executor's factory does). Time is the running
loop's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, Protocol

from p2pfaas.errors import ExecutorError, InvokeError, InvokeTimeout, LocalError, MemoryExceeded
from p2pfaas.exec.base import ExecResult, FunctionSpec
from p2pfaas.exec.metering import NO_USAGE, Meter, Usage
from p2pfaas.exec.pool_policy import Decision, WarmPoolPolicy
from p2pfaas.exec.shim_client import ShimConnection

log = logging.getLogger(__name__)


class Instance(Protocol):
    """One runtime (a container, a process) serving one function over a shim connection."""

    @property
    def instance_id(self) -> str: ...

    @property
    def connection(self) -> ShimConnection:
        """The open connection; only valid after `boot` returned."""
        ...

    def meter(self) -> Meter:
        """The instance's usage counters; only valid after `boot` returned."""
        ...

    async def boot(self, *, timeout_s: float) -> None:
        """Start the runtime and connect to its shim; `ExecutorError` if not up within `timeout_s`."""
        ...

    async def diagnose(self, error: ExecutorError) -> InvokeError:
        """After the connection failed with `error`: `MemoryExceeded` if the runtime was killed
        for memory, else an `ExecutorError` saying what happened. Must not raise."""
        ...

    async def destroy(self) -> None:
        """Kill and remove the runtime and its files. Idempotent; fine on a dead or unbooted one."""
        ...


InstanceFactory = Callable[[FunctionSpec, str], Instance]  # (function, instance id) -> unbooted instance


class WarmPool:
    """Driven by `invoke` calls and a reaper task that removes instances idle past the keep-alive."""

    def __init__(
        self,
        *,
        factory: InstanceFactory,
        max_per_function: int,
        keep_alive_s: float,
        startup_timeout_s: float,
    ) -> None:
        self._factory = factory
        self._policy = WarmPoolPolicy(max_per_function=max_per_function, keep_alive_s=keep_alive_s)
        self._startup_timeout_s = startup_timeout_s
        self._instances: dict[str, Instance] = {}
        self._digests: dict[str, str] = {}  # instance id -> digest
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        if self._reaper is not None:
            raise LocalError("WarmPool.start() called twice")
        self._reaper = asyncio.create_task(self._reap_forever(), name="warm-pool-reaper")

    async def aclose(self) -> None:
        """Destroy every instance, including ones in use (their invocations fail with ExecutorError)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ExecutorError("the executor is closing"))
        instances = list(self._instances.values())
        self._instances.clear()
        for instance in instances:
            self._spawn(instance.destroy())
        while self._cleanups:
            await asyncio.gather(*self._cleanups)

    def instance(self, instance_id: str) -> Instance | None:
        return self._instances.get(instance_id)

    def instance_ids(self, digest: str | None = None) -> list[str]:
        return [i for i, d in self._digests.items() if digest is None or d == digest]

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        """Run `fn` on a warm (or new) instance. Queueing for a free one counts against `timeout_s`;
        starting one is bounded separately by the startup timeout."""
        if self._reaper is None or self._closed:
            raise LocalError("the executor is not started, or already closed")
        instance, cold = await self._checkout(fn, timeout_s=timeout_s)
        meter = instance.meter()
        try:
            _begin(meter)
            result = await instance.connection.invoke(payload, timeout_s=timeout_s)
            usage = _end(meter)
        except InvokeTimeout:
            await self._retire(instance)
            raise
        except ExecutorError as exc:
            error = await instance.diagnose(exc)
            await self._retire(instance)
            if error is exc:
                raise
            raise error from exc
        except BaseException:
            # Cancelled mid-call (or refused before sending): reuse only if still in step.
            if instance.connection.broken:
                await self._retire(instance)
            else:
                self._release(instance)
            raise
        if not result.ok and result.error_type == "MemoryError":
            # Allocation failed inside the function (rlimit, or a huge request): the runtime's
            # heap may be left fragmented or bloated, so treat it as the limit being hit.
            await self._retire(instance)
            raise MemoryExceeded(f"the function exceeded its {fn.memory_mb} MB memory limit")
        self._release(instance)
        return replace(result, cold=cold, cpu_s=usage.cpu_s, peak_memory_bytes=usage.peak_memory_bytes)

    async def _checkout(self, fn: FunctionSpec, *, timeout_s: float) -> tuple[Instance, bool]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            acquired = self._policy.acquire(fn.digest, loop.time(), new_id=secrets.token_hex(5))
            if acquired.decision is Decision.REUSE:
                return self._instances[acquired.instance_id], False
            if acquired.decision is Decision.START:
                return await self._start_instance(fn, acquired.instance_id), True
            waiter = loop.create_future()
            self._waiters.setdefault(fn.digest, []).append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise InvokeTimeout(
                    f"no free instance of {fn.digest[:12]} within {timeout_s:g} s "
                    f"({self._policy.max_per_function} busy)"
                ) from None
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters[fn.digest].remove(waiter)

    async def _start_instance(self, fn: FunctionSpec, instance_id: str) -> Instance:
        instance = self._factory(fn, instance_id)
        self._instances[instance_id] = instance
        self._digests[instance_id] = fn.digest
        try:
            await instance.boot(timeout_s=self._startup_timeout_s)
        except BaseException:
            await self._retire(instance)
            raise
        return instance

    def _release(self, instance: Instance) -> None:
        if self._closed:
            return  # aclose is destroying it
        self._policy.release(instance.instance_id, asyncio.get_running_loop().time())
        self._wake(self._digests[instance.instance_id])

    async def _retire(self, instance: Instance) -> None:
        """Destroy a busy instance, then free its slot. Shielded: a cancelled caller must not
        leave it half-destroyed, and its slot stays taken until it really is gone."""
        task = self._spawn(self._destroy_and_forget(instance))
        await asyncio.shield(task)

    async def _destroy_and_forget(self, instance: Instance) -> None:
        try:
            await instance.destroy()
        finally:
            instance_id = instance.instance_id
            if self._instances.pop(instance_id, None) is not None:
                self._wake(self._policy.discard(instance_id))
            self._digests.pop(instance_id, None)

    def _wake(self, digest: str) -> None:
        # Wake every waiter of this function: each re-asks the policy, the losers wait again.
        for waiter in self._waiters.get(digest, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._quietly(coro))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    @staticmethod
    async def _quietly(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:  # a failed cleanup must not crash the pool; the owner sweep catches leaks
            log.exception("destroying an instance failed")

    async def _reap_forever(self) -> None:
        loop = asyncio.get_running_loop()
        interval_s = min(max(self._policy.keep_alive_s / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval_s)
            for instance_id in self._policy.expired(loop.time()):
                instance = self._instances.pop(instance_id)
                self._digests.pop(instance_id, None)
                self._spawn(instance.destroy())


def _begin(meter: Meter) -> None:
    with contextlib.suppress(OSError, ValueError):
        meter.begin()


def _end(meter: Meter) -> Usage:
    try:
        return meter.end()
    except (OSError, ValueError):  # the counters vanished with the instance: the result still stands
        return NO_USAGE


class PooledExecutor:
    """What the Docker and process executors share: invocations and introspection via a `WarmPool`.

    Subclasses set `self._pool` and add their own `start`/`aclose` (what an instance *is* differs).
    """

    _pool: WarmPool

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        return await self._pool.invoke(fn, payload, timeout_s=timeout_s)

    def instance_ids(self, digest: str | None = None) -> list[str]:
        return self._pool.instance_ids(digest)

    def shim_connection(self, instance_id: str) -> ShimConnection | None:
        """The live instance's own shim connection, for measuring the floor in benchmarks.

        The pool sends on it too: use it only while nothing else invokes this function.
        """
        instance = self._pool.instance(instance_id)
        return instance.connection if instance is not None else None

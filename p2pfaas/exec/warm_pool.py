"""Warm instances of functions and the invocation flow shared by the Docker and process executors.

`WarmPool` owns instances (containers or processes, behind the small `Instance` protocol of
`exec/instance.py`), asks
`WarmPoolPolicy` which one serves an invocation, runs it over a shim connection and turns failures
into the `Executor` error contract (see `exec/base.py`):
- no answer within `timeout_s`: the instance is destroyed, `InvokeTimeout`;
- the function raised `MemoryError`, or the instance died and `Instance.diagnose` says it was
  for memory: the instance is destroyed, `MemoryExceeded`;
- the connection broke otherwise: the instance is destroyed, `ExecutorError` saying why.
A destroyed instance is replaced by a fresh one on the next invocation. An instance of a function
whose manifest allows `concurrency` > 1 serves that many invocations at once, one shim connection
each; destroying it fails the others running on it with `ExecutorError`.

Pools grow from zero on demand and shrink to zero: a reaper task (`reaper.py`) sleeps until the
policy's next deadline, destroys the instances whose keep-alive (fixed, or learned by `keepalive.py`)
has passed and boots the ones the policy pre-warms (the hybrid policy's pre-warm window, the arrival forecast
of `forecast.py`). `prewarm`/`release`/`warm_digests` let local placement scale a function by hand.

Each invocation is metered by the instance's `Meter` (cgroup or /proc counters, `metering.py`);
invocations sharing an instance split its CPU time evenly and each reports its peak memory (an
instance's connections and calls: `slots.py`).
What a call starts ends with it: the shim kills every other process of its container when the
last call in flight ends, before answering, so the call is metered until they are gone. The pool
does not trust that (the function runs inside the shim): when an instance's last call has ended it
counts the instance's tasks (`Instance.strays`), and one that runs anything beyond its shim is
destroyed at once, never reused, so nothing a call left can run or be billed beside a later one.
Invoking and destroying wait on another process, so they run under `clock.off_loop()`: on the
simulator's virtual clock, time does not jump while they wait. Booting polls for the shim's socket
on timers, so it cannot hold the clock: there, a boot takes some virtual time (about a minute for a
process). Time is the running loop's clock. The executors' shared face over a pool: `pooled.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from p2pfaas.clock import off_loop
from p2pfaas.errors import ExecutorError, InvokeTimeout, LocalError, MemoryExceeded
from p2pfaas.exec.base import ExecResult, FunctionSpec
from p2pfaas.exec.forecast import ArrivalForecast
from p2pfaas.exec.instance import Instance
from p2pfaas.exec.metering import Usage
from p2pfaas.exec.pool_policy import Decision, KeepAlivePolicy, WarmPoolPolicy, node_defaults
from p2pfaas.exec.reaper import Reaper
from p2pfaas.exec.shim_client import ShimConnection
from p2pfaas.exec.slots import Slots, shared_usage
from p2pfaas.lifecycle import TaskSet

log = logging.getLogger(__name__)


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
        keep_alive: KeepAlivePolicy | None = None,
        forecast: ArrivalForecast | None = None,
        memory_cap_mb: int = 0,
    ) -> None:
        self._factory = factory
        default_keep_alive, default_forecast = node_defaults(keep_alive_s)
        self._policy = WarmPoolPolicy(
            max_per_function=max_per_function,
            keep_alive_s=keep_alive_s,
            keep_alive=keep_alive if keep_alive is not None else default_keep_alive,
            forecast=forecast if forecast is not None else default_forecast,
            memory_cap_mb=memory_cap_mb,
        )
        self._specs: dict[str, FunctionSpec] = {}  # the last spec seen per digest, for pre-warming
        self._startup_timeout_s = startup_timeout_s
        self._instances: dict[str, Instance] = {}
        self._digests: dict[str, str] = {}  # instance id -> digest
        self._booted: dict[str, asyncio.Future[None]] = {}  # instance id -> done once up (or failed)
        self._slots: dict[str, Slots] = {}  # booted instances only
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._cleanups = TaskSet()  # instances being destroyed: `aclose` waits for them
        self._reaper = Reaper(self._policy, drop=self._drop, prewarm=self._prewarm_decided)
        self._reaper_task = TaskSet()  # the reaper's loop: `aclose` ends it
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._started:
            raise LocalError("WarmPool.start() called twice")
        self._started = True
        self._reaper_task.spawn(self._reaper.run(), name="warm-pool-reaper")

    async def aclose(self) -> None:
        """Destroy every instance, including ones in use (their invocations fail with ExecutorError)."""
        self._closed = True
        await self._reaper_task.cancel()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ExecutorError("the executor is closing"))
        instances = list(self._instances.values())
        self._instances.clear()
        for instance in instances:
            self._spawn(_destroy(instance, self._forget(instance.instance_id)))
        await self._cleanups.wait()

    def instance(self, instance_id: str) -> Instance | None:
        return self._instances.get(instance_id)

    def instance_ids(self, digest: str | None = None) -> list[str]:
        return [i for i, d in self._digests.items() if digest is None or d == digest]

    @property
    def policy(self) -> WarmPoolPolicy:
        return self._policy

    # --- local scaling, for placement ------------------------------------------------------------

    def warm_digests(self) -> dict[str, int]:
        """Booted instances per function (busy or idle): where an invocation would start warm."""
        counts: dict[str, int] = {}
        for instance_id in self._slots:
            digest = self._digests[instance_id]
            counts[digest] = counts.get(digest, 0) + 1
        return counts

    async def prewarm(self, fn: FunctionSpec, count: int) -> None:
        """Have at least `count` instances of `fn` (capped by the pool's limits); returns once the
        ones started here have booted. They then age out under the function's keep-alive."""
        self._check_open()
        self._specs[fn.digest] = fn
        ids = self._policy.prewarm_now(
            fn.digest,
            count,
            asyncio.get_running_loop().time(),
            lambda: secrets.token_hex(5),
            memory_mb=fn.memory_mb,
            concurrency=fn.concurrency,
        )
        await asyncio.gather(*(self._spawn_prewarm(fn, instance_id) for instance_id in ids))

    def release(self, digest: str) -> None:
        """Destroy the function's idle instances now (busy ones finish first, then age out)."""
        for instance_id in self._policy.drop_idle(digest):
            self._drop(instance_id)

    # --- invocations ----------------------------------------------------------------------------

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        """Run `fn` on a warm (or new) instance. Queueing for a free one counts against `timeout_s`;
        starting one is bounded separately by the startup timeout."""
        self._check_open()
        loop = asyncio.get_running_loop()
        instance, cold = await self._checkout(fn, timeout_s=timeout_s)
        try:
            connection = await self._connection(instance)
        except BaseException:
            await self._retire(instance)  # it cannot take another connection: it is not healthy
            raise
        started = loop.time()
        cpu_base_s = self._slots[instance.instance_id].begin(instance)
        try:
            with off_loop():
                result = await connection.invoke(payload, timeout_s=timeout_s)
            usage = self._meter_end(instance, cpu_base_s)
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
            if connection.broken:
                await self._retire(instance)
            else:
                self._release(instance, connection, loop.time() - started)
            raise
        if not result.ok and result.error_type == "MemoryError":
            # Allocation failed inside the function (rlimit, or a huge request): the runtime's
            # heap may be left fragmented or bloated, so treat it as the limit being hit.
            await self._retire(instance)
            raise MemoryExceeded(f"the function exceeded its {fn.memory_mb} MB memory limit")
        result = replace(result, cold=cold, cpu_s=usage.cpu_s, peak_memory_bytes=usage.peak_memory_bytes)
        if self._outlived(instance):
            # Something the calls started still runs (the shim ends it; a function that undid
            # that, or left a thread, did): no later call may run, or pay, beside it.
            log.warning("instance %s runs more than its shim after a call: replaced", instance.instance_id)
            await self._retire(instance)
            return result
        # The runtime's own measure when the loop's clock cannot see the work (a virtual clock).
        self._release(instance, connection, max(loop.time() - started, result.duration_s))
        return result

    def _check_open(self) -> None:
        if not self._started or self._closed:
            raise LocalError("the executor is not started, or already closed")

    async def _checkout(self, fn: FunctionSpec, *, timeout_s: float) -> tuple[Instance, bool]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._specs[fn.digest] = fn
        arrival = True
        while True:
            acquired = self._policy.acquire(
                fn.digest,
                loop.time(),
                new_id=secrets.token_hex(5),
                memory_mb=fn.memory_mb,
                concurrency=fn.concurrency,
                arrival=arrival,
            )
            arrival = False
            for evicted in acquired.evict:
                self._drop(evicted)
            if acquired.decision is Decision.REUSE:
                # (No rearm: a reuse only makes deadlines stale or later; the reaper skips them.)
                booted = self._booted[acquired.instance_id]  # registered before any boot starts
                if booted.done() and booted.exception() is not None:
                    raise ExecutorError(f"the instance's boot failed: {booted.exception()}")
                if booted.done():
                    return self._instances[acquired.instance_id], False
                # Packed onto an instance still booting for another call: as cold as that one.
                try:
                    await asyncio.shield(booted)
                except asyncio.CancelledError:  # give the slot back once the boot is over
                    self._spawn(self._release_after_boot(acquired.instance_id, booted))
                    raise
                return self._instances[acquired.instance_id], True
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
                    f"({self._policy.count(fn.digest)} busy, {self._policy.memory_used_mb} MB in use)"
                ) from None
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters[fn.digest].remove(waiter)
                if not self._waiters.get(fn.digest, True):
                    del self._waiters[fn.digest]

    async def _start_instance(self, fn: FunctionSpec, instance_id: str) -> Instance:
        instance = self._factory(fn, instance_id)
        self._instances[instance_id] = instance
        self._digests[instance_id] = fn.digest
        booted = self._booted.get(instance_id)  # a pre-warm registered it when it was decided
        if booted is None:
            booted = self._booted[instance_id] = asyncio.get_running_loop().create_future()
        try:
            await instance.boot(timeout_s=self._startup_timeout_s)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else ExecutorError("the instance's boot was cancelled")
            booted.set_exception(error)
            booted.exception()  # retrieved: callers packed onto it re-raise it themselves
            await self._retire(instance)
            raise
        self._slots[instance_id] = Slots(free=[instance.connection])
        booted.set_result(None)
        return instance

    async def _release_after_boot(self, instance_id: str, booted: asyncio.Future[None]) -> None:
        with contextlib.suppress(Exception):
            await booted
        instance = self._instances.get(instance_id)
        if instance is not None and booted.exception() is None:
            self._release(instance, None, 0.0)

    async def _connection(self, instance: Instance) -> ShimConnection:
        slots = self._slots.get(instance.instance_id)
        if slots is None:  # another invocation's failure retired it meanwhile
            raise ExecutorError("the instance was destroyed before the invocation could start")
        return await slots.connection(instance, timeout_s=self._startup_timeout_s)

    def _meter_end(self, instance: Instance, cpu_base_s: float) -> Usage:
        slots = self._slots.get(instance.instance_id)
        sharing = slots.running if slots else 1  # this invocation included: `_release` counts it out
        return shared_usage(instance.meter(), cpu_base_s, sharing=sharing)

    def _outlived(self, instance: Instance) -> bool:
        """Whether the invocation that just ended left something running (`Slots.left_running`)."""
        slots = self._slots.get(instance.instance_id)
        return slots is not None and slots.left_running(instance)  # None: retired meanwhile

    def _release(self, instance: Instance, connection: ShimConnection | None, run_s: float) -> None:
        instance_id = instance.instance_id
        if self._closed or instance_id not in self._instances:
            return  # aclose is destroying it, or another invocation's failure retired it
        if connection is not None:
            self._slots[instance_id].give_back(connection)
        loop = asyncio.get_running_loop()
        self._policy.release(instance_id, loop.time(), run_s=run_s)
        self._reaper.rearm_if_sooner()
        self._wake(self._digests[instance_id])

    async def _retire(self, instance: Instance) -> None:
        """Destroy a busy instance, then free its slot. Shielded: a cancelled caller must not
        leave it half-destroyed, and its slot stays taken until it really is gone."""
        task = self._spawn(self._destroy_and_forget(instance))
        await asyncio.shield(task)

    async def _destroy_and_forget(self, instance: Instance) -> None:
        slots = self._slots.get(instance.instance_id)
        try:
            await _destroy(instance, slots.extra if slots else [])
        finally:
            instance_id = instance.instance_id
            if self._instances.pop(instance_id, None) is not None:
                now = asyncio.get_running_loop().time()
                self._wake(self._policy.discard(instance_id, now))
            self._forget(instance_id)

    def _forget(self, instance_id: str) -> list[ShimConnection]:
        """Drop the pool's records of an instance; returns its extra connections, to close."""
        self._digests.pop(instance_id, None)
        self._booted.pop(instance_id, None)
        slots = self._slots.pop(instance_id, None)
        return slots.extra if slots else []

    def _drop(self, instance_id: str) -> None:
        """Destroy an instance the policy already forgot (expired, evicted or released)."""
        instance = self._instances.pop(instance_id)
        self._spawn(_destroy(instance, self._forget(instance_id)))

    def _wake(self, digest: str) -> None:
        # Wake every waiter of this function: each re-asks the policy, the losers wait again.
        # Under a memory cap any freed instance may be the room another function waits for.
        groups = self._waiters.values() if self._policy.memory_cap_mb else [self._waiters.get(digest, [])]
        for waiters in groups:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._cleanups.spawn(self._quietly(coro), name="destroy an instance")

    @staticmethod
    async def _quietly(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:  # a failed cleanup must not crash the pool; the owner sweep catches leaks
            log.exception("destroying an instance failed")

    def _prewarm_decided(self, digest: str, instance_id: str) -> None:
        """The reaper's pre-warm: the policy decided to boot `instance_id` of `digest`."""
        self._spawn_prewarm(self._specs[digest], instance_id)

    def _spawn_prewarm(self, fn: FunctionSpec, instance_id: str) -> asyncio.Task[None]:
        # The policy counts the instance as booting from now on, so a call may claim it before the
        # task runs: its boot future must exist before this returns.
        self._booted[instance_id] = asyncio.get_running_loop().create_future()
        return self._spawn(self._prewarm(fn, instance_id))

    async def _prewarm(self, fn: FunctionSpec, instance_id: str) -> None:
        try:
            await self._start_instance(fn, instance_id)
        except Exception as exc:  # _start_instance has retired it; the next invocation starts one
            log.warning("pre-warming %s failed: %s", fn.digest[:12], exc)
            return
        instance = self._instances.get(instance_id)
        if self._closed:  # aclose ran while it booted: it is ours to remove
            if instance is not None:
                self._instances.pop(instance_id, None)
                await _destroy(instance, self._forget(instance_id))
        elif instance is not None:
            self._policy.booted(instance_id, asyncio.get_running_loop().time())
            self._reaper.rearm()
            self._wake(fn.digest)


async def _destroy(instance: Instance, extra: list[ShimConnection]) -> None:
    with off_loop():  # it waits on the runtime's exit, not on a timer
        for connection in extra:
            await connection.aclose()
        await instance.destroy()

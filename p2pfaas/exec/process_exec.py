"""Runs functions as local shim processes with NO SANDBOX: for devnets and machines without Docker.

Each warm instance is `python -I -B shim.py` (the same shim the containers run), started with
`asyncio.create_subprocess_exec` in its own session and reached over the same unix-socket
protocol, so the warm pool, timeouts and error contract are exactly those of the Docker executor.
Memory is capped with RLIMIT_AS (which the shim sets on itself, so no `preexec_fn` runs in this
threaded process): the address-space limit is `memory_mb`, interpreter included.

Usage is metered from /proc (`metering.ProcMeter`: utime+stime, VmHWM), in clock ticks.

What it does NOT do: isolate anything. The function runs as this user, sees this file system and
network, and can read this process's files. Never use it for code you do not trust; the label
`kind` says so to users.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from p2pfaas.errors import ExecutorError, InvokeError, MemoryExceeded
from p2pfaas.exec.base import INSTANCE_ENV, FunctionSpec
from p2pfaas.exec.forecast import ArrivalForecast
from p2pfaas.exec.instance import ShimInstance
from p2pfaas.exec.metering import ProcMeter
from p2pfaas.exec.pool_policy import KeepAlivePolicy
from p2pfaas.exec.pooled import PooledExecutor
from p2pfaas.exec.run_dir import RunDir
from p2pfaas.exec.runtime import SHIM_PATH
from p2pfaas.exec.runtime.shim import EXIT_MEMORY
from p2pfaas.exec.shim_client import connect_when_ready
from p2pfaas.exec.warm_pool import WarmPool

_EXIT_WAIT_S = 2.0
_PID_FILE = "pid"
_OUTPUT_FILE = "output.log"


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None  # loaded before any fork


def _die_with_the_node() -> None:
    """Runs in the child before exec: the kernel kills the shim when the node process dies, even by
    SIGKILL, so a crashed node leaves no shim behind (a restarted node also sweeps leftovers)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _ProcessInstance(ShimInstance):
    """One shim process; driven by `WarmPool`."""

    def __init__(self, fn: FunctionSpec, instance_id: str, *, run_dir: RunDir, python: str) -> None:
        super().__init__(instance_id, run_dir)
        self._fn = fn
        self._python = python
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def boot(self, *, timeout_s: float) -> None:
        directory = self.run_dir.instance_dir(self.instance_id)
        await asyncio.to_thread(directory.mkdir, mode=0o700)
        # The function's prints and the shim's complaints; the file lives as long as the instance.
        output = await asyncio.to_thread(open, directory / _OUTPUT_FILE, "wb")
        with output:
            self._process = await asyncio.create_subprocess_exec(
                self._python,
                "-I",
                "-B",
                str(SHIM_PATH),
                "--socket",
                str(self.socket_path),
                "--code-dir",
                str(self._fn.code_dir.absolute()),
                "--handler",
                self._fn.handler,
                "--rlimit-as-mb",
                str(self._fn.memory_mb),
                *(("--deps-dir", str(self._fn.deps_dir.absolute())) if self._fn.deps_dir is not None else ()),
                *(("--concurrency", str(self._fn.concurrency)) if self._fn.concurrency > 1 else ()),
                stdin=subprocess.DEVNULL,
                env={**os.environ, **INSTANCE_ENV},
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group, so destroy() also kills whatever the function forked.
                start_new_session=True,
                preexec_fn=_die_with_the_node,
            )
        await asyncio.to_thread((directory / _PID_FILE).write_text, str(self._process.pid))
        self._connection = await connect_when_ready(
            self.socket_path,
            timeout_s=timeout_s,
            exit_reason=self._exit_reason,
            check_every_s=0.0,  # returncode is free to read
        )
        self._meter = ProcMeter.for_pid(self._process.pid)

    async def _exit_reason(self) -> str | None:
        assert self._process is not None
        if self._process.returncode is None:
            return None
        return f"shim process exited with status {self._process.returncode}"

    async def diagnose(self, error: ExecutorError) -> InvokeError:
        process = self._process
        if process is None or self._connection is None or not self._connection.lost:
            return error
        try:
            async with asyncio.timeout(_EXIT_WAIT_S):
                status = await process.wait()
        except TimeoutError:
            return ExecutorError(f"{error} (the shim process is still running)")
        # EXIT_MEMORY: the shim could not even report a MemoryError. SIGKILL: we have not sent
        # one yet (destroy comes after diagnose), so it was the kernel's OOM killer.
        if status in (EXIT_MEMORY, -signal.SIGKILL):
            return MemoryExceeded(f"the function exceeded its {self._fn.memory_mb} MB memory limit")
        return ExecutorError(f"the shim process exited with status {status} during the invocation")

    async def destroy(self) -> None:
        self._meter.close()
        if self._connection is not None:
            await self._connection.aclose()
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            async with asyncio.timeout(_EXIT_WAIT_S):
                await process.wait()
        await asyncio.to_thread(self.run_dir.remove, self.instance_id)


class UnsandboxedProcessExecutor(PooledExecutor):
    """An `Executor` running each function's warm instances as local processes. NOT A SANDBOX."""

    kind = "process (UNSANDBOXED)"
    sandboxed = False

    def __init__(
        self,
        *,
        work_dir: Path,
        max_per_function: int = 4,
        keep_alive_s: float = 300.0,
        startup_timeout_s: float = 15.0,
        python: str = sys.executable,
        keep_alive: KeepAlivePolicy | None = None,
        forecast: ArrivalForecast | None = None,
        memory_cap_mb: int = 0,
    ) -> None:
        self._run_dir = RunDir(work_dir)
        self._python = python
        self._pool = WarmPool(
            factory=self._new_instance,
            max_per_function=max_per_function,
            keep_alive_s=keep_alive_s,
            startup_timeout_s=startup_timeout_s,
            keep_alive=keep_alive,
            forecast=forecast,
            memory_cap_mb=memory_cap_mb,
        )

    def _new_instance(self, fn: FunctionSpec, instance_id: str) -> _ProcessInstance:
        return _ProcessInstance(fn, instance_id, run_dir=self._run_dir, python=self._python)

    async def start(self) -> None:
        """Kill shim processes left by a previous run in `work_dir`, clear it, start the reaper."""
        await asyncio.to_thread(self._kill_leftovers)
        await asyncio.to_thread(self._run_dir.sweep)
        await asyncio.to_thread(self._run_dir.create)
        await self._pool.start()

    async def aclose(self) -> None:
        await self._pool.aclose()

    def pid(self, instance_id: str) -> int | None:
        """The process id of a live instance: the seam for a future metering layer."""
        instance = self._pool.instance(instance_id)
        return instance.pid if isinstance(instance, _ProcessInstance) else None

    def _kill_leftovers(self) -> None:
        for directory in self._run_dir.leftovers():
            try:
                pid = int((directory / _PID_FILE).read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue  # no pid file, or the process is gone
            # Only if the pid still runs a shim of this directory: pids are recycled.
            if str(directory).encode() in cmdline and str(SHIM_PATH).encode() in cmdline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

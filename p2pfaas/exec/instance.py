"""What the warm pool runs: an `Instance` (a container, a process) serving one function over a
shim connection, and `ShimInstance`, the part every kind shares (its id, its shim's socket in the
run directory, the connection and meter its `boot` sets). The Docker and process executors
subclass `ShimInstance` (`exec/docker_exec.py`, `exec/process_exec.py`); `WarmPool` uses only the
protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from p2pfaas.errors import ExecutorError, InvokeError
from p2pfaas.exec.metering import Meter, NullMeter
from p2pfaas.exec.run_dir import RunDir
from p2pfaas.exec.shim_client import ShimConnection

__all__ = ["Instance", "ShimInstance"]


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

    async def open_connection(self, *, timeout_s: float) -> ShimConnection:
        """Another connection to the booted instance's shim, for one more concurrent invocation."""
        ...

    async def boot(self, *, timeout_s: float) -> None:
        """Start the runtime and connect to its shim; `ExecutorError` if not up within `timeout_s`."""
        ...

    def strays(self, *, connections: int) -> int:
        """With no invocation running on it and `connections` shim connections open: how many
        tasks (processes or threads) it runs beyond its shim's own; 0 where that cannot be told."""
        ...

    async def diagnose(self, error: ExecutorError) -> InvokeError:
        """After the connection failed with `error`: `MemoryExceeded` if the runtime was killed
        for memory, else an `ExecutorError` saying what happened. Must not raise."""
        ...

    async def destroy(self) -> None:
        """Kill and remove the runtime and its files. Idempotent; fine on a dead or unbooted one."""
        ...


class ShimInstance:
    """What every `Instance` kind shares: its id, its shim's socket in the run directory, and the
    connection and meter its `boot` sets. Subclasses add `boot`, `diagnose` and `destroy`."""

    def __init__(self, instance_id: str, run_dir: RunDir) -> None:
        self.instance_id = instance_id
        self.run_dir = run_dir
        self._connection: ShimConnection | None = None
        self._meter: Meter = NullMeter()

    @property
    def socket_path(self) -> Path:
        return self.run_dir.socket_path(self.instance_id)

    @property
    def connection(self) -> ShimConnection:
        assert self._connection is not None, "boot() first"
        return self._connection

    def meter(self) -> Meter:
        return self._meter

    async def open_connection(self, *, timeout_s: float) -> ShimConnection:
        return await ShimConnection.open(self.socket_path, timeout_s=timeout_s)

    def strays(self, *, connections: int) -> int:
        return 0

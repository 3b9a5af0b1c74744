"""A booted instance's slots in the warm pool: its shim connections not in use, the invocations
running on it, and how each of them is metered and checked when it ends.

Invocations sharing an instance split its CPU time evenly (`shared_usage`) and each reports its
peak memory; when the last one in flight ends, the instance's tasks are counted (`Slots.left_running`)
so that one running anything beyond its shim is replaced. What this does not do: decide which
instance serves a call (`pool_policy.py`) or destroy one (`warm_pool.py`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from p2pfaas.clock import off_loop
from p2pfaas.exec.instance import Instance
from p2pfaas.exec.metering import NO_USAGE, Meter, Usage
from p2pfaas.exec.shim_client import ShimConnection


@dataclass
class Slots:
    """A booted instance's shim connections not in use, and the invocations running on it.
    Driven by the pool: `connection` and `begin` as an invocation starts, `give_back` as it ends."""

    free: list[ShimConnection]
    extra: list[ShimConnection] = field(default_factory=list)  # opened beyond the boot one: ours to close
    running: int = 0

    async def connection(self, instance: Instance, *, timeout_s: float) -> ShimConnection:
        """A free connection, or another one opened to the instance (kept in `extra`)."""
        if self.free:
            return self.free.pop()
        with off_loop():
            connection = await instance.open_connection(timeout_s=timeout_s)
        self.extra.append(connection)
        return connection

    def begin(self, instance: Instance) -> float:
        """Start metering an invocation: the meter's CPU reading it starts from."""
        self.running += 1
        if self.running == 1:  # a new busy period: reset the counters
            with contextlib.suppress(OSError, ValueError):
                instance.meter().begin()
            return 0.0
        return read_usage(instance.meter()).cpu_s

    def left_running(self, instance: Instance) -> bool:
        """Whether the invocation that just ended was the instance's last in flight and left
        something running (`Instance.strays`)."""
        if self.running != 1:
            return False  # others still run: their end is checked
        try:
            return instance.strays(connections=1 + len(self.extra)) > 0
        except (OSError, ValueError):  # the counters vanished with the instance
            return False

    def give_back(self, connection: ShimConnection) -> None:
        """An invocation ended: its connection is free again unless it broke."""
        self.running -= 1
        if not connection.broken:
            self.free.append(connection)


def read_usage(meter: Meter) -> Usage:
    try:
        return meter.end()
    except (OSError, ValueError):  # the counters vanished with the instance: the result still stands
        return NO_USAGE


def shared_usage(meter: Meter, cpu_base_s: float, *, sharing: int) -> Usage:
    """An invocation's usage since `cpu_base_s` (`Slots.begin`), with `sharing` invocations (it
    included) running side by side: they share the instance's CPU time evenly."""
    usage = read_usage(meter)
    return Usage(max(usage.cpu_s - cpu_base_s, 0.0) / max(sharing, 1), usage.peak_memory_bytes)

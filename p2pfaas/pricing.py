"""What a node charges for one invocation, from metered usage; sans-I/O.

A node sets two prices in integer micro-credits: per CPU-second (from the container's cgroup, so a
function waiting on I/O pays no CPU) and per GB-second of memory (peak memory times the time the
function ran, like a commercial FaaS's GB-second but on what was used rather than what was
reserved). The charge is rounded up to a whole micro-credit, so usage never rounds to free.
This module does not meter (`exec/metering.py`) or settle (the ledger, issue #5).
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pfaas.errors import ConfigError


@dataclass(frozen=True)
class Prices:
    """A node's prices in micro-credits (1e-6 credit)."""

    per_cpu_s_micro: int = 20
    per_gb_s_micro: int = 2

    def __post_init__(self) -> None:
        if self.per_cpu_s_micro < 0 or self.per_gb_s_micro < 0:
            raise ConfigError(f"prices must not be negative, got {self}")

    def charge_micro(self, *, cpu_ms: int, peak_memory_mb: int, wall_ms: int) -> int:
        """The price of one invocation that used `cpu_ms` of CPU and `peak_memory_mb` for `wall_ms`."""
        assert min(cpu_ms, peak_memory_mb, wall_ms) >= 0, "usage must not be negative"
        # Integer arithmetic and one ceiling: exact and monotone.
        # cpu_ms/1000 * per_cpu_s + peak_memory_mb/1024 * wall_ms/1000 * per_gb_s, over 1024 * 1000.
        cpu_part = cpu_ms * self.per_cpu_s_micro * 1024
        memory_part = peak_memory_mb * wall_ms * self.per_gb_s_micro
        return -(-(cpu_part + memory_part) // (1024 * 1000))


FREE = Prices(0, 0)

"""The simulated network's knobs: one options object for every static fault, and latency models.

`FaultOptions` plays the part of TigerBeetle's `PacketSimulatorOptions`: one frozen value says how slow and
how lossy the network is. Dynamic faults (partitions that start and heal, hosts that crash and restart) are
events, not options: they are methods on `InMemoryNetwork`, and `FaultOptions.blocked_links` only seeds the
initial partition.

It does not model bandwidth, congestion, MTU fragmentation, or reordering inside a stream (streams keep byte
order; datagrams may reorder through jitter).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LOCAL_LATENCY_S", "ConstantLatency", "FaultOptions", "LatencyModel", "SyntheticLatency"]

# One-way delay between two endpoints on the same host (a loopback hop).
LOCAL_LATENCY_S = 0.00005

LatencyModel = Callable[[str, str], float]
"""Maps (source host, destination host) to a one-way delay in seconds, before jitter. Must be pure."""


@dataclass(frozen=True)
class ConstantLatency:
    """The same one-way delay on every link between distinct hosts."""

    one_way_s: float = 0.010

    def __call__(self, src_host: str, dst_host: str) -> float:
        return LOCAL_LATENCY_S if src_host == dst_host else self.one_way_s


@dataclass(frozen=True)
class SyntheticLatency:
    """Hosts placed at seeded random points of a unit square; delay grows with distance.

    A host's point depends only on (seed, host), not on the order hosts are seen, so adding a host never moves
    the others. The one-way delay runs from `min_s` (same point) to `max_s` (opposite corners); the defaults
    give round trips of 10 to 150 ms, the range KADEMLIA.md was measured with. Distances obey the triangle
    inequality, which Vivaldi-style coordinates assume.
    """

    seed: int
    min_s: float = 0.005
    max_s: float = 0.075
    _points: dict[str, tuple[float, float]] = field(default_factory=dict, compare=False, repr=False)

    def point(self, host: str) -> tuple[float, float]:
        found = self._points.get(host)
        if found is None:
            # Seeding Random with a str hashes it with SHA-512: stable across processes and hash seeds.
            rng = random.Random(f"{self.seed}/{host}")
            found = (rng.random(), rng.random())
            self._points[host] = found
        return found

    def __call__(self, src_host: str, dst_host: str) -> float:
        if src_host == dst_host:
            return LOCAL_LATENCY_S
        (x1, y1), (x2, y2) = self.point(src_host), self.point(dst_host)
        distance = math.hypot(x1 - x2, y1 - y2) / math.sqrt(2.0)
        return self.min_s + (self.max_s - self.min_s) * distance


@dataclass(frozen=True)
class FaultOptions:
    """Static network behaviour. Replace the whole value (`dataclasses.replace`) to change it mid-run.

    - `latency`: one-way delay model; None means a `SyntheticLatency` seeded from the network's Random.
    - `jitter_s`: each datagram and stream segment gets an extra uniform [0, jitter_s) delay (streams still
      deliver in order: a segment never overtakes the one before it).
    - `datagram_loss`: probability that a datagram vanishes (streams are reliable, as TCP is).
    - `blocked_links`: host pairs that cannot talk at start, in both directions (see `partition()`).
    - `connect_timeout_s`: how long a connect keeps retrying SYNs to an unreachable host before ETIMEDOUT
      (Linux gives up after about 127 s with its default six retries).
    - `max_datagram_bytes`: larger datagrams fail with EMSGSIZE, as a UDP socket does.
    """

    latency: LatencyModel | None = None
    jitter_s: float = 0.0
    datagram_loss: float = 0.0
    blocked_links: frozenset[tuple[str, str]] = frozenset()
    connect_timeout_s: float = 127.0
    max_datagram_bytes: int = 65_507

    def __post_init__(self) -> None:
        if not 0.0 <= self.datagram_loss <= 1.0:
            raise ValueError(f"datagram_loss must be in [0, 1], got {self.datagram_loss}")
        if self.jitter_s < 0:
            raise ValueError(f"jitter_s must be >= 0, got {self.jitter_s}")
        if self.connect_timeout_s < 0:
            raise ValueError(f"connect_timeout_s must be >= 0, got {self.connect_timeout_s}")

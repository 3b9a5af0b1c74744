"""Vivaldi network coordinates (sans-I/O): predict the RTT to a peer without measuring it.

Algorithm from F. Dabek, R. Cox, F. Kaashoek, R. Morris, "Vivaldi: A Decentralized Network Coordinate
System", SIGCOMM 2004: the adaptive timestep of section 3.4 (constants c_e = c_c = 0.25) and the
height-vector model of section 5.4 (a 2-D Euclidean position plus a non-negative height that stands for
the access link). Fed with (RTT sample, remote coordinate, remote error); it does no I/O, reads no clock
and draws randomness only from the `random.Random` passed in (for the random unit vector when two
coordinates coincide). It does not filter RTT samples beyond rejecting nonsense; callers pass RTTs of
replies that were not retransmitted (Karn's rule).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

CE = 0.25  # error-estimate weight (c_e, section 3.4)
CC = 0.25  # timestep constant (c_c, section 3.4)
MIN_HEIGHT_S = 1e-5
MAX_RTT_S = 10.0


@dataclass(frozen=True, slots=True)
class Coordinate:
    """A point: Euclidean `x`, `y` plus `height`, all seconds; RTT between two is distance + heights."""

    x: float = 0.0
    y: float = 0.0
    height: float = MIN_HEIGHT_S

    def rtt_to(self, other: Coordinate) -> float:
        return math.hypot(self.x - other.x, self.y - other.y) + self.height + other.height

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.height)

    @classmethod
    def from_tuple(cls, values: tuple[float, ...]) -> Coordinate | None:
        """A coordinate from the wire, or None if it is not three finite, sane numbers."""
        if len(values) != 3 or not all(math.isfinite(v) and abs(v) < 1e3 for v in values):
            return None
        return cls(values[0], values[1], max(MIN_HEIGHT_S, values[2]))


class Vivaldi:
    """One node's coordinate and its error estimate, moved by each RTT sample (driven by the protocol)."""

    def __init__(self, rng: random.Random) -> None:
        self.coord = Coordinate()
        self.error = 1.0  # relative error estimate e_i in [0, 1]; starts fully uncertain
        self.samples = 0
        self._rng = rng

    def observe(self, rtt_s: float, remote: Coordinate, remote_error: float) -> None:
        """Update from one RTT sample to a node at `remote` whose error estimate is `remote_error`."""
        if not (0.0 < rtt_s < MAX_RTT_S) or not math.isfinite(remote_error):
            return
        remote_error = min(max(remote_error, 1e-3), 1.0)
        # Sample weight balances local and remote error (Fig. 3, lines 1-2).
        weight = self.error / (self.error + remote_error)
        predicted = self.coord.rtt_to(remote)
        sample_error = abs(predicted - rtt_s) / rtt_s
        self.error = min(1.0, sample_error * CE * weight + self.error * (1.0 - CE * weight))
        delta = CC * weight
        force = delta * (rtt_s - predicted)  # > 0 pushes us away from the remote, < 0 pulls closer
        dx, dy = self.coord.x - remote.x, self.coord.y - remote.y
        planar = math.hypot(dx, dy)
        if planar < 1e-9:  # coincident points: pick a random direction (section 3.2)
            angle = self._rng.uniform(0.0, 2.0 * math.pi)
            dx, dy, planar = math.cos(angle), math.sin(angle), 1.0
        norm = planar + self.coord.height + remote.height
        # Height vectors (section 5.4): the unit vector has a height component (h_i + h_j) / ||x_i - x_j||.
        ux, uy = dx / norm, dy / norm
        uh = (self.coord.height + remote.height) / norm
        self.coord = Coordinate(
            self.coord.x + force * ux,
            self.coord.y + force * uy,
            max(MIN_HEIGHT_S, self.coord.height + force * uh),
        )
        self.samples += 1

    def predict_rtt_s(self, remote: Coordinate) -> float:
        return self.coord.rtt_to(remote)

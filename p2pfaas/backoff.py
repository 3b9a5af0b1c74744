"""Pauses between retries (sans-I/O): capped exponential backoff, with "equal jitter" from a given rng.

`Backoff(base_s, cap_s).pause_s(failures, rng)` is the pause after the `failures`-th failure in a
row: `base_s` doubled per failure up to `cap_s`, and with an rng half of it fixed and half random
(so retrying peers spread out, and none waits less than half the ceiling). It is the one formula
behind the database's transient-failure retries (`db/retry.py`), the node's receipt sends and
unsigned-receipt pauses (`node/payments/receipts.py`) and its job callbacks (`node/jobs.py`); each
keeps its own loop, because what counts as retryable and what a failure records differ. The DHT's
retransmissions (`dht/protocol.py`) are not a backoff: they resend a request with the same id and
wait for its reply a little longer each time, with no pause in between.

Not tenacity: its jittered waits draw from the global `random` and its retry state reads
`time.monotonic()`, outside the simulation seam (time from the loop, randomness from a given
`random.Random`); and a sans-I/O caller (the receipt queue) needs only the pause, not a loop.
No clock, no I/O: callers sleep (or schedule) the pause themselves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    base_s: float
    cap_s: float = float("inf")

    def __post_init__(self) -> None:
        assert 0 <= self.base_s <= self.cap_s, (self.base_s, self.cap_s)

    def pause_s(self, failures: int, rng: random.Random | None = None) -> float:
        """The pause after `failures` (1, 2, ...) failures in a row; jittered when given an rng."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** (failures - 1))
        return ceiling if rng is None else ceiling / 2 + rng.uniform(0, ceiling / 2)

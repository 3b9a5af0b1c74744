"""Slowing down password guessing: failed logins lock a key out for exponentially longer (sans-I/O).

`LoginThrottle` counts failed logins under three keys at once, each with its own threshold:
the (username, client address) pair (5: a typist's mistakes, then a lockout that doubles with each
further failure, up to 15 minutes), the client address alone (50: one machine spraying many
usernames) and the username alone (200: many machines guessing one password, while a victim
at the keyboard is locked out only by the pair key, not by a stranger's failures, until an
attack is large). A success clears the pair. Counts expire `window_s` after the last failure.

The state is bounded (least recently failed keys are forgotten first) so a flood of made-up
usernames cannot grow memory without limit. It lives in one anchor process: several anchors
behind a load balancer each count their own share, which still bounds guesses per anchor.
No clock, no I/O: the caller passes `now` (the loop's monotonic time).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["LoginThrottle", "Throttle"]


@dataclass
class _Failures:
    count: int
    last_at: float


@dataclass
class Throttle:
    """Failures per key; after `threshold` of them, a lockout of base_s * 2^(extra failures)."""

    threshold: int
    base_s: float = 1.0
    max_s: float = 900.0
    window_s: float = 900.0
    capacity: int = 100_000
    _keys: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)

    def wait_s(self, key: str, now: float) -> float:
        """How long `key` must wait before its next attempt (0: go ahead)."""
        entry = self._keys.get(key)
        if entry is None or now - entry.last_at >= self.window_s or entry.count < self.threshold:
            return 0.0
        lockout = min(self.max_s, self.base_s * 2.0 ** (entry.count - self.threshold))
        return max(0.0, entry.last_at + lockout - now)

    def failed(self, key: str, now: float) -> None:
        entry = self._keys.pop(key, None)
        if entry is None or now - entry.last_at >= self.window_s:
            entry = _Failures(0, now)
        entry.count += 1
        entry.last_at = now
        self._keys[key] = entry  # most recent last
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)

    def undo(self, key: str) -> None:
        """Take back one failure counted ahead of time (the attempt succeeded)."""
        entry = self._keys.get(key)
        if entry is not None:
            entry.count -= 1
            if entry.count <= 0:
                del self._keys[key]


@dataclass
class LoginThrottle:
    pair: Throttle = field(default_factory=lambda: Throttle(threshold=5))
    address: Throttle = field(default_factory=lambda: Throttle(threshold=50))
    user: Throttle = field(default_factory=lambda: Throttle(threshold=200))

    def _keys(self, username: str, address: str) -> tuple[tuple[Throttle, str], ...]:
        return ((self.pair, f"{username}\x00{address}"), (self.address, address), (self.user, username))

    def wait_s(self, username: str, address: str, now: float) -> float:
        return max(throttle.wait_s(key, now) for throttle, key in self._keys(username, address))

    def failed(self, username: str, address: str, now: float) -> None:
        for throttle, key in self._keys(username, address):
            throttle.failed(key, now)

    def attempt(self, username: str, address: str, now: float) -> float:
        """Check and count an attempt as a failure at once, before the slow password check: concurrent
        guesses cannot all pass the check before any of them counts. Returns the wait (0: go ahead;
        nothing is counted then unless it is 0). `succeeded` takes the count back."""
        wait_s = self.wait_s(username, address, now)
        if wait_s == 0.0:
            self.failed(username, address, now)
        return wait_s

    def succeeded(self, username: str, address: str) -> None:
        for throttle, key in self._keys(username, address):
            throttle.undo(key)
        self.pair.clear(f"{username}\x00{address}")

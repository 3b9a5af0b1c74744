"""The warm pool's reaper: a task that sleeps until the pool policy's next deadline, then has the
pool drop the instances whose keep-alive has passed and boot the ones the policy pre-warms.

A release or a pre-warm may bring the deadline forward: the pool rearms the reaper then, and only
then (`rearm_if_sooner`), not once per invocation. Time is the running loop's clock. What this
does not do: decide anything (`pool_policy.py` does) or touch an instance (the pool's callbacks do).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable

from p2pfaas.exec.pool_policy import WarmPoolPolicy

_MIN_SLEEP_S = 0.01
_MAX_SLEEP_S = 5.0  # wakes at least this often, whatever the policy says


class Reaper:
    """Driven by `run` (the pool's task) and by the pool's `rearm` calls."""

    def __init__(
        self,
        policy: WarmPoolPolicy,
        *,
        drop: Callable[[str], None],
        prewarm: Callable[[str, str], object],
    ) -> None:
        """`drop(instance_id)` destroys an instance the policy expired; `prewarm(digest,
        instance_id)` starts booting one the policy pre-warms (and returns at once)."""
        self._policy = policy
        self._drop = drop
        self._prewarm = prewarm
        self._rearm = asyncio.Event()
        self._wake_at = float("inf")  # when the sleeping reaper wakes anyway (loop time)

    def rearm(self) -> None:
        """Wake now and look at the policy's deadlines again."""
        self._rearm.set()

    def rearm_if_sooner(self) -> None:
        """Wake if the policy's next deadline comes before the reaper would wake: not once per
        invocation (a release usually sets a keep-alive minutes away)."""
        if self._policy.next_deadline() < self._wake_at:
            self._rearm.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Sleep until the policy's next deadline; a release or reuse may bring it forward.
            delay_s = min(max(self._policy.next_deadline() - loop.time(), _MIN_SLEEP_S), _MAX_SLEEP_S)
            self._rearm.clear()
            self._wake_at = loop.time() + delay_s
            # (asyncio.timeout, not wait_for: on 3.11 cancelling wait_for while the event is set
            # can leave the cancellation stuck.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_s):
                    await self._rearm.wait()
            self._wake_at = float("inf")
            now = loop.time()
            for instance_id in self._policy.expired(now):
                self._drop(instance_id)
            for digest, instance_id in self._policy.prewarm(now, lambda: secrets.token_hex(5)):
                self._prewarm(digest, instance_id)

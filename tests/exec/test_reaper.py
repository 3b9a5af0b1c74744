"""The warm pool's reaper (`p2pfaas.exec.reaper`) over a real pool policy on the simulator's virtual
clock: an idle instance is dropped once its keep-alive has passed, not before, and a rearm wakes
the sleeping reaper for a deadline brought forward."""

from __future__ import annotations

import asyncio
import contextlib

from p2pfaas.exec.pool_policy import Decision, WarmPoolPolicy
from p2pfaas.exec.reaper import Reaper
from p2pfaas.sim.clock import VirtualClockLoop


def _no_prewarm(digest: str, instance_id: str) -> None:
    raise AssertionError(f"nothing to pre-warm, yet {instance_id} of {digest}")


def _idle_instance(policy: WarmPoolPolicy, instance_id: str, now: float) -> None:
    assert policy.acquire("f", now, new_id=instance_id).decision is Decision.START
    policy.release(instance_id, now)


def test_an_idle_instance_is_dropped_when_its_keep_alive_has_passed() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        policy = WarmPoolPolicy(max_per_function=2, keep_alive_s=60)
        dropped: list[tuple[str, float]] = []
        reaper = Reaper(
            policy, drop=lambda instance_id: dropped.append((instance_id, loop.time())), prewarm=_no_prewarm
        )
        task = asyncio.create_task(reaper.run())
        t0 = loop.time()
        _idle_instance(policy, "a", t0)
        reaper.rearm_if_sooner()
        await asyncio.sleep(59)
        assert dropped == []
        await asyncio.sleep(2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return [(instance_id, at - t0) for instance_id, at in dropped]

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        [(instance_id, after_s)] = runner.run(main())
    assert instance_id == "a" and 60 <= after_s <= 61


def test_a_rearm_wakes_the_reaper_for_an_instance_already_past_its_keep_alive() -> None:
    async def main() -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        policy = WarmPoolPolicy(max_per_function=1, keep_alive_s=0)
        dropped: list[str] = []
        woken = asyncio.Event()

        def drop(instance_id: str) -> None:
            dropped.append(instance_id)
            woken.set()

        reaper = Reaper(policy, drop=drop, prewarm=_no_prewarm)
        task = asyncio.create_task(reaper.run())
        await asyncio.sleep(1)  # asleep with nothing scheduled: up to its longest sleep
        rearmed_at = loop.time()
        _idle_instance(policy, "a", rearmed_at)
        reaper.rearm()
        await woken.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return dropped, loop.time() - rearmed_at

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        dropped, after_s = runner.run(main())
    assert dropped == ["a"] and after_s < 1  # not at the reaper's next wake-up, 4 s later

"""ModelExecutor: the simulator's executor models warm instances like the pool, incl. placement hooks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from p2pfaas.errors import InvokeTimeout
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.model_exec import ModelExecutor
from p2pfaas.sim import VirtualClockLoop

T = TypeVar("T")
NOWHERE = Path("/nonexistent")  # the model never reads the bundle
FN = FunctionSpec(digest="ab" * 32, code_dir=NOWHERE, handler="main:handle", memory_mb=64, timeout_s=30)
OTHER = FunctionSpec(digest="cd" * 32, code_dir=NOWHERE, handler="main:handle", memory_mb=64, timeout_s=30)


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await main()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(wrapper())


def _executor(slots: int = 4) -> ModelExecutor:
    return ModelExecutor(
        rng=random.Random(7), mean_run_s=0.01, cold_start_s=0.5, keep_alive_s=60.0, slots=slots
    )


async def _invoke(executor: ModelExecutor, fn: FunctionSpec = FN, x: int = 1) -> bool:
    result = await executor.invoke(fn, f'{{"x": {x}}}'.encode(), timeout_s=30)
    assert result.ok and result.output == f'{{"echo":{{"x":{x}}}}}'.encode()
    return result.cold


def test_first_call_is_cold_the_next_warm_and_idle_past_keep_alive_cold_again() -> None:
    async def main() -> list[bool]:
        executor = _executor()
        await executor.start()
        colds = [await _invoke(executor), await _invoke(executor)]
        assert executor.warm_digests() == {FN.digest: 1}
        await asyncio.sleep(61)
        assert executor.warm_digests() == {}
        colds.append(await _invoke(executor))
        await executor.aclose()
        return colds

    assert run_virtual(main) == [True, False, True]


def test_concurrent_calls_need_one_instance_each_unless_the_manifest_allows_concurrency() -> None:
    async def main(fn: FunctionSpec) -> tuple[list[bool], dict[str, int]]:
        executor = _executor()
        await executor.start()
        colds = list(await asyncio.gather(*(_invoke(executor, fn, x) for x in range(3))))
        warm = executor.warm_digests()
        colds += await asyncio.gather(*(_invoke(executor, fn, x) for x in range(3)))
        return colds, warm

    assert run_virtual(lambda: main(FN)) == ([True] * 3 + [False] * 3, {FN.digest: 3})
    shared = FunctionSpec(**{**FN.__dict__, "concurrency": 3})
    colds, warm = run_virtual(lambda: main(shared))
    assert warm == {FN.digest: 1}
    assert colds == [True] * 3 + [False] * 3  # all three packed onto one booting instance


def test_prewarm_takes_a_modelled_cold_start_and_makes_the_next_calls_warm() -> None:
    async def main() -> tuple[float, list[bool], int]:
        loop = asyncio.get_running_loop()
        executor = _executor()
        await executor.start()
        start = loop.time()
        await executor.prewarm(FN, 2)
        boot_s = loop.time() - start
        assert executor.warm_digests() == {FN.digest: 2}
        colds = list(await asyncio.gather(_invoke(executor), _invoke(executor)))
        await executor.prewarm(FN, 2)  # already there: nothing new, no wait
        assert loop.time() - start < boot_s + 1
        return boot_s, colds, executor.prewarmed

    boot_s, colds, prewarmed = run_virtual(main)
    assert boot_s == pytest.approx(0.5)
    assert colds == [False, False]
    assert prewarmed == 2


def test_prewarm_is_capped_at_the_slots_and_rejects_a_negative_count() -> None:
    async def main() -> dict[str, int]:
        executor = _executor(slots=2)
        await executor.start()
        with pytest.raises(ValueError, match="count"):
            await executor.prewarm(FN, -1)
        await executor.prewarm(FN, 5)
        return executor.warm_digests()

    assert run_virtual(main) == {FN.digest: 2}


def test_a_call_arriving_during_a_prewarm_claims_the_booting_instance() -> None:
    async def main() -> tuple[bool, float, int]:
        loop = asyncio.get_running_loop()
        executor = _executor()
        await executor.start()
        start = loop.time()
        boot = asyncio.create_task(executor.prewarm(FN, 1))
        await asyncio.sleep(0.3)
        cold = await _invoke(executor)
        await boot
        return cold, loop.time() - start, executor.warm_digests()[FN.digest]

    cold, elapsed, warm = run_virtual(main)
    assert cold  # as cold as the boot it waited for
    assert 0.5 <= elapsed < 0.5 + 0.3  # waited out the rest of the boot, not a whole new one
    assert warm == 1  # no second instance was started


def test_release_drops_idle_instances_but_not_busy_ones_or_other_functions() -> None:
    async def main() -> tuple[dict[str, int], dict[str, int], bool]:
        executor = _executor()
        await executor.start()
        await executor.prewarm(FN, 2)
        await executor.prewarm(OTHER, 1)
        slow = asyncio.create_task(executor.invoke(FN, b"1", timeout_s=30))
        await asyncio.sleep(0)
        executor.release(FN.digest)
        during = executor.warm_digests()
        await slow
        executor.release(FN.digest)
        after = executor.warm_digests()
        return during, after, await _invoke(executor)

    during, after, cold = run_virtual(main)
    assert during == {FN.digest: 1, OTHER.digest: 1}  # the busy one stays until it finishes
    assert after == {OTHER.digest: 1}
    assert cold


def test_a_timed_out_call_kills_its_instance() -> None:
    async def main() -> dict[str, int]:
        executor = ModelExecutor(rng=random.Random(1), mean_run_s=10.0, cold_start_s=0.0)
        await executor.start()
        await executor.prewarm(FN, 1)
        with pytest.raises(InvokeTimeout):
            for _ in range(20):  # exponential run times: one of them exceeds the deadline
                await executor.invoke(FN, b"1", timeout_s=5)
        return executor.warm_digests()

    assert run_virtual(main) == {}

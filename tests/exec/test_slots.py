"""A booted instance's slots (`p2pfaas.exec.slots`): connections reused, then opened beside the boot
one; calls side by side share the CPU time evenly; only the last call in flight counts strays."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from p2pfaas.errors import ExecutorError, InvokeError
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.instance import ShimInstance
from p2pfaas.exec.metering import NO_USAGE, Meter, Usage
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.exec.run_dir import RunDir
from p2pfaas.exec.slots import Slots, read_usage, shared_usage


class ScriptedMeter:
    """Counters that read what the test says, or fail as vanished ones do."""

    def __init__(self, *readings: Usage | None) -> None:
        self.readings = list(readings)
        self.begun = 0

    def begin(self) -> None:
        self.begun += 1

    def end(self) -> Usage:
        reading = self.readings.pop(0)
        if reading is None:
            raise OSError("the cgroup is gone")
        return reading

    def close(self) -> None:
        pass


class CountedInstance(ShimInstance):
    """An instance whose task count the test sets; never booted."""

    def __init__(self, run_dir: RunDir, meter: Meter, strays: int | None) -> None:
        super().__init__("0123456789", run_dir)
        self._meter = meter
        self.stray_count = strays
        self.asked: list[int] = []

    def strays(self, *, connections: int) -> int:
        self.asked.append(connections)
        if self.stray_count is None:
            raise ValueError("unreadable")
        return self.stray_count

    async def boot(self, *, timeout_s: float) -> None:
        raise AssertionError("not booted here")

    async def diagnose(self, error: ExecutorError) -> InvokeError:
        return error

    async def destroy(self) -> None:
        pass


def test_calls_side_by_side_share_the_cpu_time_and_a_vanished_meter_reads_nothing() -> None:
    meter = ScriptedMeter(Usage(3.0, 100), Usage(0.5, 7), None)
    assert shared_usage(meter, 1.0, sharing=2) == Usage(1.0, 100)  # (3 - 1) / 2, its own peak
    assert shared_usage(meter, 1.0, sharing=0) == Usage(0.0, 7)  # never below zero
    assert read_usage(meter) == NO_USAGE


def test_the_first_call_resets_the_counters_and_a_second_starts_from_their_reading(short_dir: Path) -> None:
    meter = ScriptedMeter(Usage(2.5, 0))
    instance = CountedInstance(RunDir(short_dir), meter, strays=0)
    slots = Slots(free=[])
    assert slots.begin(instance) == 0.0 and meter.begun == 1
    assert slots.begin(instance) == 2.5 and meter.begun == 1 and slots.running == 2


def test_only_the_last_call_in_flight_counts_what_is_left(short_dir: Path) -> None:
    instance = CountedInstance(RunDir(short_dir), ScriptedMeter(), strays=1)
    slots = Slots(free=[], running=2)
    assert not slots.left_running(instance) and instance.asked == []  # another call still runs
    slots.running = 1
    assert slots.left_running(instance) and instance.asked == [1]
    instance.stray_count = 0
    assert not slots.left_running(instance)
    instance.stray_count = None  # the counters vanished with the instance
    assert not slots.left_running(instance)


async def test_the_boot_connection_is_reused_then_more_are_opened_beside_it(
    short_dir: Path, function: FunctionSpec
) -> None:
    fn = dataclasses.replace(function, concurrency=2)  # the shim serves two connections at once
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run", max_per_function=1)
    await executor.start()
    try:
        assert (await executor.invoke(fn, b"{}", timeout_s=30)).ok
        [instance_id] = executor.instance_ids()
        instance = executor._pool.instance(instance_id)
        assert instance is not None
        slots = Slots(free=[instance.connection])
        first = await slots.connection(instance, timeout_s=30)
        second = await slots.connection(instance, timeout_s=30)
        assert first is instance.connection and slots.free == [] and slots.extra == [second]
        assert (await second.invoke(b"[2]", timeout_s=30)).output == b"[2]"  # a live connection of its own
        slots.running = 2
        slots.give_back(second)
        assert slots.running == 1 and slots.free == [second]
        await second.aclose()
        slots.give_back(second)  # closed: not free again
        assert slots.free == [second] and slots.running == 0
    finally:
        await executor.aclose()

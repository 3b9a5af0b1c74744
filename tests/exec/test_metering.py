"""Metering: CPU time and peak memory per invocation from the kernel's counters, not a wall clock.

On the real engine a CPU-burning function and a sleeping one run for the same wall time; the
cgroup says one used about that much CPU and the other almost none. A hoarding function's peak is
seen, and the next invocation's peak starts afresh. The process executor does the same from /proc.
The cgroup v2 file formats are read from a directory laid out as the kernel lays them out (this
machine's Docker uses cgroup v1, which the container tests cover for real).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2pfaas.exec.base import ExecResult, FunctionSpec
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.metering import CgroupMeter, NullMeter, ProcMeter, Usage, cgroup_dirs
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor

from .conftest import make_function

BURNER = """
import time

def main(request):
    end = time.monotonic() + request["s"]
    if request["op"] == "burn":
        n = 0
        while time.monotonic() < end:
            n += 1
    elif request["op"] == "sleep":
        time.sleep(request["s"])
    elif request["op"] == "hoard":
        hoard = bytearray(request["mb"] << 20)
        hoard[::4096] = b"x" * len(hoard[::4096])  # touch every page
        return len(hoard)
    return request["op"]
"""

WALL_S = 0.4


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


async def burn_sleep_hoard(
    executor: DockerExecutor | UnsandboxedProcessExecutor, fn: FunctionSpec, *, peak_resets: bool = True
) -> None:
    await executor.invoke(fn, _body({"op": "none", "s": 0}), timeout_s=30)  # start it: boot is not metered
    burn = await executor.invoke(fn, _body({"op": "burn", "s": WALL_S}), timeout_s=30)
    sleep = await executor.invoke(fn, _body({"op": "sleep", "s": WALL_S}), timeout_s=30)
    assert burn.ok and sleep.ok and not burn.cold and not sleep.cold
    # The burner used CPU for much of its wall time (as much as this busy machine gave it), never
    # more than that single thread could; the sleeper next to nothing.
    assert WALL_S / 4 < burn.cpu_s <= burn.duration_s + 0.05, burn
    assert sleep.cpu_s < 0.05 and burn.cpu_s > 5 * sleep.cpu_s, (burn, sleep)
    hoard = await executor.invoke(fn, _body({"op": "hoard", "mb": 40, "s": 0}), timeout_s=30)
    after = await executor.invoke(fn, _body({"op": "sleep", "s": 0}), timeout_s=30)
    assert hoard.peak_memory_bytes > sleep.peak_memory_bytes + (35 << 20), (hoard, sleep)
    if peak_resets:  # else (cgroup v2 before Linux 6.12) the peak since start: an upper bound
        assert after.peak_memory_bytes < hoard.peak_memory_bytes - (30 << 20), "the peak is per invocation"
    assert 0 < sleep.peak_memory_bytes < fn.memory_mb << 20


@pytest.mark.docker
async def test_a_container_is_metered_from_its_cgroup(
    runtime_image: str, short_dir: Path, tmp_path: Path
) -> None:
    executor = DockerExecutor(owner_id="test-metering", work_dir=short_dir / "run", image=runtime_image)
    await executor.start()
    try:
        fn = make_function(tmp_path / "burner", memory_mb=128, source=BURNER)
        await executor.invoke(fn, _body({"op": "none", "s": 0}), timeout_s=30)
        [instance_id] = executor.instance_ids(fn.digest)
        meter = CgroupMeter.for_container(executor.container_id(instance_id) or "")
        assert isinstance(meter, CgroupMeter)
        meter.close()
        await burn_sleep_hoard(executor, fn, peak_resets=meter.peak_resets)
        [instance_id] = executor.instance_ids(fn.digest)
        container_id = executor.container_id(instance_id)
        assert container_id is not None and cgroup_dirs(container_id) is not None
    finally:
        await executor.aclose()


async def test_a_process_is_metered_from_proc(short_dir: Path, tmp_path: Path) -> None:
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run")
    await executor.start()
    try:
        await burn_sleep_hoard(executor, make_function(tmp_path / "burner", memory_mb=256, source=BURNER))
    finally:
        await executor.aclose()


def test_cgroup_v2_files(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    scope = tmp_path / "system.slice" / "docker-abc.scope"
    scope.mkdir(parents=True)
    (scope / "cpu.stat").write_text("usage_usec 1000\nuser_usec 600\nsystem_usec 400\n")
    (scope / "memory.peak").write_text("4096\n")
    assert cgroup_dirs("abc", root=tmp_path) == (scope, scope, 2)
    assert cgroup_dirs("other", root=tmp_path) is None
    meter = CgroupMeter.for_container("abc", root=tmp_path)
    assert isinstance(meter, CgroupMeter)
    meter.begin()
    assert (scope / "memory.peak").read_text().startswith("0")  # the reset is a write (the kernel's)
    (scope / "cpu.stat").write_text("usage_usec 251000\nuser_usec 600\nsystem_usec 400\n")
    (scope / "memory.peak").write_text("8388608\n")
    assert meter.end() == Usage(cpu_s=0.25, peak_memory_bytes=8 << 20)
    meter.close()
    assert isinstance(CgroupMeter.for_container("gone", root=tmp_path), NullMeter)


def test_cgroup_v1_layout_of_the_cgroupfs_driver(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    memory = tmp_path / "memory" / "docker" / "abc"
    for directory in (cpu, memory):
        directory.mkdir(parents=True)
    (cpu / "cpuacct.usage").write_text("1000000\n")
    (memory / "memory.max_usage_in_bytes").write_text("999\n")
    assert cgroup_dirs("abc", root=tmp_path) == (cpu, memory, 1)
    meter = CgroupMeter.for_container("abc", root=tmp_path)
    meter.begin()
    (cpu / "cpuacct.usage").write_text("3000000\n")
    (memory / "memory.max_usage_in_bytes").write_text("2097152\n")
    assert meter.end() == Usage(cpu_s=0.002, peak_memory_bytes=2 << 20)
    assert Usage(0.0, (2 << 20) + 1).peak_memory_mb == 3  # a started MiB counts


def test_a_vanished_process_meters_as_nothing() -> None:
    assert isinstance(ProcMeter.for_pid(2**22 + 7), NullMeter)
    assert NullMeter().end() == Usage(0.0, 0)
    assert isinstance(ExecResult(ok=True).cpu_s, float)

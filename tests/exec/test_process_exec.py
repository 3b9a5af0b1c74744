"""The unsandboxed process executor, and through it the shared warm pool's behaviour."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from p2pfaas.errors import ExecutorError, InvokeTimeout, MemoryExceeded
from p2pfaas.exec.base import Executor, FunctionSpec
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor

from .conftest import make_function


@pytest.fixture
async def executor(short_dir: Path) -> AsyncIterator[UnsandboxedProcessExecutor]:
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run", max_per_function=2, keep_alive_s=60)
    await executor.start()
    yield executor
    await executor.aclose()


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def _running(pid: int | None) -> bool:
    assert pid is not None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between open and read
        return False
    return state != "Z"  # a zombie has been killed, only not reaped yet


async def _eventually(condition: Callable[[], bool]) -> bool:
    """Poll `condition` for up to ~20 s of loop time (a bound, not a speed assertion)."""
    for _ in range(400):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def test_is_an_executor_labelled_unsandboxed(executor: UnsandboxedProcessExecutor) -> None:
    as_protocol: Executor = executor
    assert as_protocol.sandboxed is False and "UNSANDBOXED" in as_protocol.kind


async def test_runs_warm(executor: UnsandboxedProcessExecutor, function: FunctionSpec) -> None:
    first = await executor.invoke(function, _body({"a": 1}), timeout_s=10)
    assert first.ok and first.cold and json.loads(first.output) == {"a": 1}
    second = await executor.invoke(function, _body({"op": "calls"}), timeout_s=10)
    assert (second.cold, second.output) == (False, b"2")  # the same process served both
    assert len(executor.instance_ids(function.digest)) == 1


async def test_function_error_is_a_result(
    executor: UnsandboxedProcessExecutor, function: FunctionSpec
) -> None:
    result = await executor.invoke(function, _body({"op": "raise", "x": 3}), timeout_s=10)
    assert (result.ok, result.error_type, result.error_message) == (False, "ValueError", "bad input: 3")
    assert "handler.py" in result.traceback and "raise ValueError" in result.traceback
    exited = await executor.invoke(function, _body({"op": "exit"}), timeout_s=10)
    assert (exited.error_type, exited.cold) == ("SystemExit", False)  # and the instance survived


async def test_timeout_then_fresh_instance(
    executor: UnsandboxedProcessExecutor, function: FunctionSpec
) -> None:
    await executor.invoke(function, _body(1), timeout_s=10)
    [old_id] = executor.instance_ids()
    old_pid = executor.pid(old_id)
    with pytest.raises(InvokeTimeout):
        await executor.invoke(function, _body({"op": "sleep", "s": 30}), timeout_s=0.2)
    assert executor.instance_ids() == []
    assert not _running(old_pid)
    after = await executor.invoke(function, _body(2), timeout_s=10)
    assert after.ok and after.cold


async def test_memory_bomb(executor: UnsandboxedProcessExecutor, tmp_path: Path) -> None:
    function = make_function(tmp_path / "small", memory_mb=96)
    with pytest.raises(MemoryExceeded):
        await executor.invoke(function, _body({"op": "alloc", "mb": 512}), timeout_s=30)
    result = await executor.invoke(function, _body({"op": "alloc", "mb": 8}), timeout_s=30)
    assert result.ok and result.cold and result.output == b"8"


async def test_runtime_dying_is_executor_error(
    executor: UnsandboxedProcessExecutor, function: FunctionSpec
) -> None:
    with pytest.raises(ExecutorError, match="status 5"):
        await executor.invoke(function, _body({"op": "die"}), timeout_s=10)
    assert (await executor.invoke(function, _body(1), timeout_s=10)).ok


async def test_concurrency_is_capped_per_function(
    executor: UnsandboxedProcessExecutor, function: FunctionSpec
) -> None:
    results = await asyncio.gather(
        *(executor.invoke(function, _body({"op": "sleep", "s": 0.2}), timeout_s=30) for _ in range(5))
    )
    assert all(result.ok for result in results)
    assert sum(result.cold for result in results) == 2
    assert len(executor.instance_ids(function.digest)) == 2


async def test_queueing_past_the_timeout(short_dir: Path, function: FunctionSpec) -> None:
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run", max_per_function=1)
    await executor.start()
    try:
        busy = asyncio.create_task(executor.invoke(function, _body({"op": "sleep", "s": 1}), timeout_s=30))
        assert await _eventually(lambda: bool(executor.instance_ids()))
        with pytest.raises(InvokeTimeout, match="no free instance"):
            await executor.invoke(function, _body(1), timeout_s=0.05)
        assert (await busy).ok
    finally:
        await executor.aclose()


async def test_cancellation_retires_the_instance(
    executor: UnsandboxedProcessExecutor, function: FunctionSpec
) -> None:
    await executor.invoke(function, _body(1), timeout_s=10)
    task = asyncio.create_task(executor.invoke(function, _body({"op": "sleep", "s": 30}), timeout_s=60))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    result = await executor.invoke(function, _body(2), timeout_s=10)
    assert result.ok and result.cold  # the interrupted instance was not reused


async def test_idle_instances_are_reaped(short_dir: Path, function: FunctionSpec) -> None:
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run", keep_alive_s=0.05)
    await executor.start()
    try:
        await executor.invoke(function, _body(1), timeout_s=10)
        assert await _eventually(lambda: not executor.instance_ids())
    finally:
        await executor.aclose()


async def test_start_kills_a_crashed_predecessors_processes(short_dir: Path, function: FunctionSpec) -> None:
    crashed = UnsandboxedProcessExecutor(work_dir=short_dir / "run")
    await crashed.start()
    await crashed.invoke(function, _body(1), timeout_s=10)
    [instance_id] = crashed.instance_ids()
    pid = crashed.pid(instance_id)
    assert pid is not None
    successor = UnsandboxedProcessExecutor(work_dir=short_dir / "run")
    await successor.start()  # `crashed` never closed: as after a node crash
    try:
        assert await _eventually(lambda: not _running(pid))
        assert not (short_dir / "run" / instance_id).exists()
        assert (await successor.invoke(function, _body(2), timeout_s=10)).ok
    finally:
        await crashed.aclose()
        await successor.aclose()


async def test_aclose_leaves_nothing(short_dir: Path, function: FunctionSpec, tmp_path: Path) -> None:
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run")
    await executor.start()
    other = make_function(tmp_path / "other")
    await asyncio.gather(
        executor.invoke(function, _body(1), timeout_s=10), executor.invoke(other, _body(2), timeout_s=10)
    )
    pids = [executor.pid(instance_id) for instance_id in executor.instance_ids()]
    await executor.aclose()
    assert len(pids) == 2 and not any(_running(pid) for pid in pids)
    assert os.listdir(short_dir / "run") == []

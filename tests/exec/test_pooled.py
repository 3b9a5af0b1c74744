"""The executors' shared face over a warm pool (`p2pfaas.exec.pooled`), through the process
executor: invocations, the instances per function, and an instance's own shim connection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.pooled import PooledExecutor
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor


async def test_instances_are_told_per_function_and_their_own_connection_reaches_them(
    short_dir: Path, function: FunctionSpec
) -> None:
    other = dataclasses.replace(function, digest="f" * 64)
    executor: PooledExecutor = UnsandboxedProcessExecutor(work_dir=short_dir / "run", keep_alive_s=600)
    assert isinstance(executor, UnsandboxedProcessExecutor)
    await executor.start()
    try:
        assert (await executor.invoke(function, b"[1]", timeout_s=30)).output == b"[1]"
        assert (await executor.invoke(other, b"[2]", timeout_s=30)).ok
        [mine] = executor.instance_ids(function.digest)
        [theirs] = executor.instance_ids(other.digest)
        assert sorted(executor.instance_ids()) == sorted([mine, theirs])
        assert executor.warm_digests() == {function.digest: 1, other.digest: 1}
        connection = executor.shim_connection(mine)
        assert connection is not None
        assert (await connection.invoke(b'{"op": "calls"}', timeout_s=30)).output == b"2"  # the same process
        assert executor.shim_connection("no-such-id") is None
        executor.release(other.digest)
        assert executor.instance_ids() == [mine]
    finally:
        await executor.aclose()

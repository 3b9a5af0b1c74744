"""The executor contract (`p2pfaas.exec.base`), through the process executor: every instance runs
numeric libraries single-threaded, and a function's own exception is a result, not a raise."""

from __future__ import annotations

import json
from pathlib import Path

from p2pfaas.exec.base import INSTANCE_ENV, ExecResult, Executor, FunctionSpec
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor

from .conftest import make_function

ENV_SOURCE = """
import os

def main(request):
    if request == "raise":
        raise KeyError("missing")
    return {name: os.environ.get(name) for name in request}
"""


async def test_an_instance_sees_the_instance_env_and_an_exception_is_a_result(short_dir: Path) -> None:
    fn = make_function(short_dir / "fn", source=ENV_SOURCE)
    executor: Executor = UnsandboxedProcessExecutor(
        work_dir=short_dir / "run", max_per_function=1, keep_alive_s=60
    )
    await executor.start()
    try:
        seen = await executor.invoke(fn, json.dumps(sorted(INSTANCE_ENV)).encode(), timeout_s=10)
        assert seen.ok and json.loads(seen.output) == INSTANCE_ENV
        failed = await executor.invoke(fn, b'"raise"', timeout_s=10)
        assert not failed.ok and failed.error_type == "KeyError" and "missing" in failed.traceback
    finally:
        await executor.aclose()
    assert set(INSTANCE_ENV.values()) == {"1"}


def test_a_spec_and_a_result_default_to_one_cpu_one_call_and_nothing_printed(tmp_path: Path) -> None:
    spec = FunctionSpec("ab" * 32, tmp_path, "m:f", memory_mb=64, timeout_s=1.0)
    assert (spec.cpus, spec.concurrency, spec.deps_dir) == (1.0, 1, None)
    result = ExecResult(ok=True, output=b"1")
    assert (result.cold, result.logs, result.cpu_s, result.peak_memory_bytes) == (False, "", 0.0, 0)

"""What every instance kind shares (`p2pfaas.exec.instance.ShimInstance`): its socket in the run
directory, no connection or meter readings before boot, more connections to its shim on demand."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfaas.exec.instance import ShimInstance
from p2pfaas.exec.metering import NO_USAGE
from p2pfaas.exec.run_dir import RunDir
from p2pfaas.exec.shim_client import connect_when_ready

from .conftest import make_function
from .runtime.conftest import start_shim


def test_before_boot_it_has_a_socket_path_but_no_connection_and_meters_nothing(short_dir: Path) -> None:
    run_dir = RunDir(short_dir / "run")
    instance = ShimInstance("0123456789", run_dir)
    assert instance.socket_path == run_dir.socket_path("0123456789")
    with pytest.raises(AssertionError, match="boot"):
        _ = instance.connection
    meter = instance.meter()
    meter.begin()
    assert meter.end() == NO_USAGE
    assert instance.strays(connections=1) == 0  # cannot be told: nothing counted


async def test_more_connections_reach_the_same_shim(tmp_path: Path, short_dir: Path) -> None:
    run_dir = RunDir(short_dir / "run")
    run_dir.create()
    instance = ShimInstance("0123456789", run_dir)
    instance.socket_path.parent.mkdir()
    make_function(tmp_path / "fn")
    process = await start_shim(tmp_path / "fn", instance.socket_path)

    async def exited() -> str | None:
        return None if process.returncode is None else f"status {process.returncode}"

    try:
        first = await connect_when_ready(
            instance.socket_path, timeout_s=30, exit_reason=exited, check_every_s=0
        )
        assert (await first.invoke(b'{"op": "calls"}', timeout_s=30)).output == b"1"
        await first.aclose()  # the shim (concurrency 1) serves one connection at a time
        second = await instance.open_connection(timeout_s=30)
        assert (await second.invoke(b'{"op": "calls"}', timeout_s=30)).output == b"2"  # the same process
        await second.aclose()
    finally:
        process.kill()
        await process.wait()

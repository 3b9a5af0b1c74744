"""The shim's watchdog (`p2pfaas.exec.runtime.watchdog`): the host counts as connected while one
of its connections has not hung up, and a shim whose host is gone exits."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from p2pfaas.exec.runtime import SHIM_PATH
from p2pfaas.exec.runtime.watchdog import EXIT_ORPHANED, Watchdog
from p2pfaas.exec.shim_client import connect_when_ready

from ..conftest import make_function


def test_the_host_is_connected_while_any_connection_has_not_hung_up() -> None:
    watchdog = Watchdog(grace_s=60)
    assert not watchdog.host_connected()  # before the first connection
    host_a, shim_a = socket.socketpair()
    host_b, shim_b = socket.socketpair()
    with host_a, shim_a, host_b, shim_b:
        watchdog.opened(shim_a)
        watchdog.opened(shim_b)
        assert watchdog.host_connected()
        host_a.close()  # the kernel hangs up as the node dies
        assert watchdog.host_connected()  # b still holds
        host_b.close()
        assert not watchdog.host_connected()
        watchdog.closed(shim_a)
        watchdog.closed(shim_b)
        assert not watchdog.host_connected()


async def test_the_shim_exits_once_its_host_has_held_no_connection_for_the_grace_period(
    tmp_path: Path, short_dir: Path
) -> None:
    make_function(tmp_path / "fn")
    sock = short_dir / "s.sock"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-B", str(SHIM_PATH), "--socket", str(sock), "--code-dir", str(tmp_path / "fn"),
        "--handler", "handler:main", "--orphan-exit-ms", "200",
    )  # fmt: skip

    async def exited() -> str | None:
        return None if process.returncode is None else f"status {process.returncode}"

    try:
        connection = await connect_when_ready(sock, timeout_s=30, exit_reason=exited, check_every_s=0)
        await asyncio.sleep(1.0)  # five grace periods, idle but connected: it stays
        assert (await connection.invoke(b"1", timeout_s=5)).output == b"1"
        await connection.aclose()  # as the kernel does when the node dies
        assert await process.wait() == EXIT_ORPHANED
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

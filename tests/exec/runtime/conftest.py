"""The shim as a subprocess, run by path as the containers and the process executor run it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pfaas.exec.runtime import SHIM_PATH
from p2pfaas.exec.shim_client import connect_when_ready

from ..conftest import make_function


async def start_shim(code_dir: Path, sock: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-B", str(SHIM_PATH), "--socket", str(sock),
        "--code-dir", str(code_dir), "--handler", "handler:main", "--max-result-bytes", "4096",
    )  # fmt: skip


@pytest.fixture
async def shim_process(tmp_path: Path, short_dir: Path) -> AsyncIterator[Path]:
    make_function(tmp_path / "fn")
    sock = short_dir / "s.sock"
    process = await start_shim(tmp_path / "fn", sock)

    async def exited() -> str | None:
        return None if process.returncode is None else f"status {process.returncode}"

    connection = await connect_when_ready(sock, timeout_s=30, exit_reason=exited, check_every_s=0)
    await connection.aclose()
    yield sock
    process.kill()
    await process.wait()

"""The host-side shim client (`p2pfaas.exec.shim_client`) against the real shim and a misbehaving one:
untrusted responses. These belong in tests/exec/test_shim_client.py; the shim's own tests are in
tests/exec/runtime/."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.errors import ExecutorError
from p2pfaas.exec.shim_client import ShimConnection, connect_when_ready, parse_response

from .runtime.conftest import start_shim


async def test_connect_when_ready_fails_fast_when_the_runtime_exits(tmp_path: Path, short_dir: Path) -> None:
    process = await start_shim(tmp_path / "does-not-exist", short_dir / "s.sock")

    async def exited() -> str | None:
        return None if process.returncode is None else f"status {process.returncode}"

    with pytest.raises(ExecutorError, match="exited during startup"):
        await connect_when_ready(short_dir / "s.sock", timeout_s=60, exit_reason=exited, check_every_s=0)
    await process.wait()


# --- the client against a misbehaving shim ---------------------------------------------------------------


async def test_peer_closing_mid_frame_is_executor_error(short_dir: Path) -> None:
    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(struct.pack(">I", 50) + b'{"v": 1')
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(half_answer, path=str(short_dir / "fake.sock"))
    async with server:
        connection = await ShimConnection.open(short_dir / "fake.sock", timeout_s=5)
        with pytest.raises(ExecutorError, match="closed"):
            await connection.invoke(b"1", timeout_s=5)
        assert connection.broken and connection.lost
        await connection.aclose()


@pytest.mark.parametrize(
    "header",
    [b"[]", b"not json", b'{"v": 2, "ok": true}', b'{"v": 1, "ok": 1, "duration_s": 0}',
     b'{"v": 1, "ok": true, "duration_s": -1}', b'{"v": 1, "ok": true, "duration_s": true}',
     b'{"v": 1, "ok": false, "error_type": 3, "duration_s": 0}'],
)  # fmt: skip
def test_parse_response_rejects_malformed_headers(header: bytes) -> None:
    with pytest.raises(ExecutorError):
        parse_response(header, b"")


@given(st.binary(max_size=200), st.binary(max_size=50))
def test_parse_response_raises_only_executor_error(header: bytes, body: bytes) -> None:
    try:
        result = parse_response(header, body)
    except ExecutorError:
        return
    assert result.duration_s >= 0

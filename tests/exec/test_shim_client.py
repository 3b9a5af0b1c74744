"""The host side of the shim protocol (`p2pfaas.exec.shim_client`) against a scripted peer on a real
unix socket: answers are read whole and checked, and a connection that went out of step is never
used again; and against the real shim (tests/exec/runtime/ has the shim's own tests)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.errors import ExecutorError, InvokeTimeout, LocalError
from p2pfaas.exec.shim_client import PROTOCOL_VERSION, ShimConnection, connect_when_ready, parse_response

from .runtime.conftest import start_shim

Answer = Callable[[dict[str, object], bytes], Awaitable[list[bytes] | None]]


def frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def header(**fields: object) -> bytes:
    return frame(json.dumps({"v": PROTOCOL_VERSION, "duration_s": 0.5} | fields).encode())


@asynccontextmanager
async def peer(path: Path, answer: Answer, *, once: bool = False) -> AsyncIterator[list[dict[str, object]]]:
    """A stand-in shim at `path`: reads each request and writes what `answer` returns (None: hang);
    with `once`, it closes the connection after its first answer."""
    requests: list[dict[str, object]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                request = json.loads(await reader.readexactly(size))
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                body = await reader.readexactly(size)
                requests.append(request)
                frames = await answer(request, body)
                if frames is None:
                    await reader.read()  # until the client gives up and closes
                    return
                writer.write(b"".join(frames))
                await writer.drain()
                if once:
                    return
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    try:
        yield requests
    finally:
        server.close()
        await server.wait_closed()


async def echo(request: dict[str, object], body: bytes) -> list[bytes] | None:
    if body == b"hang":
        return None
    if body == b"fail":
        return [header(ok=False, error_type="ValueError", traceback="tb"), frame(b"")]
    if body == b"printed":
        return [header(ok=True, logs=True), frame(b"1"), frame(b"hello\xff\n")]
    return [header(ok=True), frame(body)]


async def test_invocations_and_pings_share_one_connection(short_dir: Path) -> None:
    path = short_dir / "shim.sock"
    async with peer(path, echo) as requests:
        connection = await ShimConnection.open(path, timeout_s=5)
        await connection.ping(timeout_s=5)
        assert (await connection.invoke(b'{"a": 1}', timeout_s=5)).output == b'{"a": 1}'
        failed = await connection.invoke(b"fail", timeout_s=5)
        assert (failed.ok, failed.error_type, failed.traceback, failed.duration_s) == (
            False,
            "ValueError",
            "tb",
            0.5,
        )
        printed = await connection.invoke(b"printed", timeout_s=5)
        assert printed.output == b"1" and printed.logs == "hello\ufffd\n"
        assert [r["op"] for r in requests] == ["ping", "invoke", "invoke", "invoke"]
        assert not connection.broken
        await connection.aclose()
        small = await ShimConnection.open(path, timeout_s=5, max_payload_bytes=3)
        with pytest.raises(LocalError, match="exceeds the limit"):
            await small.invoke(b"four", timeout_s=5)
        await small.aclose()


async def test_a_timeout_leaves_the_connection_broken_for_good(short_dir: Path) -> None:
    path = short_dir / "shim.sock"
    async with peer(path, echo):
        connection = await ShimConnection.open(path, timeout_s=5)
        with pytest.raises(InvokeTimeout):
            await connection.invoke(b"hang", timeout_s=0.05)
        assert connection.broken and not connection.lost
        with pytest.raises(ExecutorError, match="cannot be reused"):
            await connection.invoke(b"{}", timeout_s=5)
        await connection.aclose()


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([frame(b"not json"), frame(b"")], "not JSON"),
        ([frame(b'{"v": 99, "ok": true}'), frame(b"")], "unsupported response header"),
        ([header(ok="yes"), frame(b"")], "malformed response header"),
        ([header(ok=True, duration_s=-1), frame(b"")], "invalid duration_s"),
        ([header(ok=True), struct.pack(">I", 10**9)], "limit is"),
        ([header(ok=True)[:3]], "closed the connection"),
    ],
)
async def test_a_malformed_answer_is_an_executor_error(
    short_dir: Path, frames: list[bytes], reason: str
) -> None:
    async def hostile(request: dict[str, object], body: bytes) -> list[bytes] | None:
        return frames

    path = short_dir / "shim.sock"
    async with peer(path, hostile, once=True):
        connection = await ShimConnection.open(path, timeout_s=5)
        with pytest.raises(ExecutorError, match=reason):
            await connection.invoke(b"{}", timeout_s=5)
        assert connection.broken
        await connection.aclose()


async def test_connect_when_ready_waits_for_the_socket_and_fails_fast_when_the_runtime_died(
    short_dir: Path,
) -> None:
    path = short_dir / "shim.sock"

    async def alive() -> str | None:
        return None

    async def dead() -> str | None:
        return "exit code 3"

    with pytest.raises(ExecutorError, match="exited during startup: exit code 3"):
        await connect_when_ready(path, timeout_s=30, exit_reason=dead, check_every_s=0)
    with pytest.raises(ExecutorError, match="did not start within"):
        await connect_when_ready(path, timeout_s=0.1, exit_reason=alive, check_every_s=0)
    connected: list[bool] = []
    async with peer(path, echo) as requests:
        connection = await connect_when_ready(
            path, timeout_s=30, exit_reason=alive, check_every_s=0, on_connect=lambda: connected.append(True)
        )
        assert connected == [True] and [r["op"] for r in requests] == ["ping"]
        await connection.aclose()
    with pytest.raises(ExecutorError, match="cannot connect"):
        await ShimConnection.open(path, timeout_s=1)


# --- against the real shim, and a misbehaving one ------------------------------------------------------


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

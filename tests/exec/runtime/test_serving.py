"""The shim's server (`p2pfaas.exec.runtime.serving`): many invocations on one warm connection, a
broken or malformed connection dropped without ending the shim, limits kept, import errors
answered on every call. In process over a socket pair, and as the real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import sys
import threading
from pathlib import Path

import pytest

from p2pfaas.errors import ExecutorError, InvokeTimeout, LocalError
from p2pfaas.exec.runtime import serving
from p2pfaas.exec.runtime.function import Function
from p2pfaas.exec.shim_client import ShimConnection, connect_when_ready

from ..conftest import make_function
from .conftest import start_shim

# --- in process -------------------------------------------------------------------------------------


def _request(op: str, payload: bytes) -> bytes:
    header = json.dumps({"v": 1, "op": op}).encode()
    return struct.pack(">I", len(header)) + header + struct.pack(">I", len(payload)) + payload


def _answer(sock: socket.socket) -> tuple[dict[str, object], bytes]:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            assert chunk, "the shim closed the connection"
            data += chunk
        return data

    header = json.loads(exactly(struct.unpack(">I", exactly(4))[0]))
    body = exactly(struct.unpack(">I", exactly(4))[0])
    return header, body


@pytest.mark.skipif(os.getpid() == 1, reason="as PID 1 a call's end kills every other process (end_strays)")
def test_a_connection_is_served_until_its_peer_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_function(tmp_path / "fn")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "handler", raising=False)
    host, shim_end = socket.socketpair()
    calls = serving.Calls()
    server = threading.Thread(
        target=serving.serve_connection,
        args=(shim_end, Function(tmp_path / "fn", "handler:main")),
        kwargs={"calls": calls, "max_payload_bytes": 1000, "max_result_bytes": 1000},
    )
    server.start()
    with host, shim_end:
        host.sendall(_request("ping", b""))
        assert _answer(host) == ({"v": 1, "ok": True, "error_type": "", "error_message": "",
                                  "traceback": "", "duration_s": 0.0}, b"")  # fmt: skip
        host.sendall(_request("invoke", b'{"op": "calls"}') + _request("invoke", b"[1]"))
        header, body = _answer(host)
        assert header["ok"] is True and body == b"1"
        assert _answer(host)[1] == b"[1]"
        host.shutdown(socket.SHUT_WR)
        server.join()
    assert calls._running == 0
    sys.modules.pop("handler", None)


def test_listen_replaces_a_socket_left_by_a_previous_shim(short_dir: Path) -> None:
    path = short_dir / "s.sock"
    with serving.listen(path):
        pass  # closed, but its file is left behind
    with serving.listen(path) as server, socket.socket(socket.AF_UNIX) as client:
        assert (path.stat().st_mode & 0o777) == 0o666
        client.connect(str(path))
        conn, _ = server.accept()
        conn.close()


# --- over a real socket: the shim as a subprocess -----------------------------------------------------


async def test_serves_many_invocations_on_one_connection(shim_process: Path) -> None:
    connection = await ShimConnection.open(shim_process, timeout_s=5)
    await connection.ping(timeout_s=5)
    for n in range(3):
        result = await connection.invoke(json.dumps({"n": n}).encode(), timeout_s=5)
        assert result.ok and json.loads(result.output) == {"n": n}
    failed = await connection.invoke(b'{"op": "raise", "x": 7}', timeout_s=5)
    assert (failed.ok, failed.error_type, failed.error_message) == (False, "ValueError", "bad input: 7")
    assert 'handler.py", line' in failed.traceback
    assert (await connection.invoke(b'{"op": "calls"}', timeout_s=5)).output == b"5"  # same warm process
    await connection.aclose()


async def test_timeout_breaks_the_connection_but_not_the_shim(shim_process: Path) -> None:
    connection = await ShimConnection.open(shim_process, timeout_s=5)
    with pytest.raises(InvokeTimeout):
        await connection.invoke(b'{"op": "sleep", "s": 0.5}', timeout_s=0.05)
    assert connection.broken
    with pytest.raises(ExecutorError, match="broken"):
        await connection.invoke(b"1", timeout_s=5)
    await connection.aclose()
    # The shim finishes the sleep, notices the closed connection and accepts the next one.
    fresh = await ShimConnection.open(shim_process, timeout_s=5)
    assert (await fresh.invoke(b"1", timeout_s=5)).output == b"1"
    await fresh.aclose()


async def test_malformed_request_drops_only_that_connection(shim_process: Path) -> None:
    def send_garbage() -> bytes:
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(shim_process))
            raw.sendall(struct.pack(">I", 5) + b"nope!")
            return raw.recv(10)

    assert await asyncio.to_thread(send_garbage) == b""  # closed without an answer
    connection = await ShimConnection.open(shim_process, timeout_s=5)
    assert (await connection.invoke(b"[]", timeout_s=5)).output == b"[]"
    await connection.aclose()


async def test_size_limits(shim_process: Path) -> None:
    connection = await ShimConnection.open(shim_process, timeout_s=5, max_payload_bytes=100)
    with pytest.raises(LocalError):
        await connection.invoke(b"1" * 101, timeout_s=5)
    assert not connection.broken  # refused before anything was sent
    too_big = await connection.invoke(b'{"op": "big", "n": 5000}', timeout_s=5)
    assert (too_big.ok, too_big.error_type) == (False, "ResultTooLarge")
    await connection.aclose()
    capped = await ShimConnection.open(shim_process, timeout_s=5, max_response_bytes=100)
    with pytest.raises(ExecutorError, match="limit"):
        await capped.invoke(b'{"op": "big", "n": 1000}', timeout_s=5)
    assert capped.broken and not capped.lost
    await capped.aclose()


async def test_import_error_is_reported_on_each_invocation(tmp_path: Path, short_dir: Path) -> None:
    make_function(tmp_path / "fn", source="raise RuntimeError('broken at import')\n")
    process = await start_shim(tmp_path / "fn", short_dir / "s.sock")

    async def exited() -> str | None:
        return None if process.returncode is None else f"status {process.returncode}"

    sock = short_dir / "s.sock"
    connection = await connect_when_ready(sock, timeout_s=30, exit_reason=exited, check_every_s=0)
    for _ in range(2):
        result = await connection.invoke(b"{}", timeout_s=5)
        assert (result.ok, result.error_type) == (False, "RuntimeError")
        assert "broken at import" in result.traceback
    await connection.aclose()
    process.kill()
    await process.wait()


async def test_the_output_travels_with_the_result(shim_process: Path) -> None:
    connection = await ShimConnection.open(shim_process, timeout_s=5)
    printed = await connection.invoke(b'{"op": "print", "text": "hello", "times": 2}', timeout_s=5)
    assert printed.ok and printed.logs == "hello\nhello\nto stderr\n"
    assert (await connection.invoke(b"[]", timeout_s=5)).logs == ""  # the next call's output is its own
    flood = await connection.invoke(
        b'{"op": "print", "text": "%s", "times": 20000}' % (b"y" * 99), timeout_s=30
    )
    assert flood.ok and len(flood.logs) < 64 * 1024 + 256 and "more bytes dropped" in flood.logs
    await connection.aclose()

"""The runtime shim and its host-side client: framing, errors, limits, untrusted responses."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.errors import ExecutorError, InvokeTimeout, LocalError
from p2pfaas.exec.runtime import SHIM_PATH, shim
from p2pfaas.exec.shim_client import ShimConnection, connect_when_ready, parse_response

from .conftest import make_function

# --- in process: the pure parts of the shim --------------------------------------------------------


def _handler(value: Any) -> Any:
    if value == "raise":
        raise KeyError("missing")
    if value == "exit":
        sys.exit(2)
    if value == "nan":
        return float("nan")
    if value == "object":
        return object()
    return {"got": value}


def test_invoke_returns_json_of_the_result() -> None:
    header, body = shim.invoke(_handler, b"[1, 2]", max_result_bytes=1024)
    assert header["ok"] is True and header["duration_s"] >= 0
    assert json.loads(body) == {"got": [1, 2]}


def test_invoke_reports_exception_with_the_functions_traceback() -> None:
    header, body = shim.invoke(_handler, b'"raise"', max_result_bytes=1024)
    assert (header["ok"], header["error_type"], body) == (False, "KeyError", b"")
    assert "in _handler" in header["traceback"] and "KeyError: 'missing'" in header["traceback"]
    assert "in invoke" not in header["traceback"]  # the shim's own frame is cut off


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [(b'"exit"', "SystemExit"), (b'"nan"', "ValueError"), (b'"object"', "TypeError"),
     (b"{", "JSONDecodeError")],
)  # fmt: skip
def test_invoke_never_raises(payload: bytes, error_type: str) -> None:
    header, _ = shim.invoke(_handler, payload, max_result_bytes=1024)
    assert (header["ok"], header["error_type"]) == (False, error_type)


def test_result_over_the_limit_is_an_error_not_a_huge_frame() -> None:
    header, body = shim.invoke(_handler, b'"' + b"x" * 100 + b'"', max_result_bytes=50)
    assert (header["ok"], header["error_type"], body) == (False, "ResultTooLarge", b"")


@pytest.mark.parametrize(
    ("spec", "error_type"),
    [("handler", "ValueError"), ("nosuchmodule:main", "ModuleNotFoundError"),
     ("handler:missing", "AttributeError")],
)  # fmt: skip
def test_load_handler_reports_errors(tmp_path: Path, spec: str, error_type: str) -> None:
    make_function(tmp_path / "fn")
    handler, error = shim.load_handler(tmp_path / "fn", spec)
    assert handler is None and error is not None and error["error_type"] == error_type


# --- over a real socket: the shim as a subprocess -----------------------------------------------------


async def _start_shim(code_dir: Path, sock: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-B", str(SHIM_PATH), "--socket", str(sock),
        "--code-dir", str(code_dir), "--handler", "handler:main", "--max-result-bytes", "4096",
    )  # fmt: skip


@pytest.fixture
async def shim_process(tmp_path: Path, short_dir: Path) -> AsyncIterator[Path]:
    make_function(tmp_path / "fn")
    sock = short_dir / "s.sock"
    process = await _start_shim(tmp_path / "fn", sock)

    async def exited() -> str | None:
        return None if process.returncode is None else f"status {process.returncode}"

    connection = await connect_when_ready(sock, timeout_s=30, exit_reason=exited, check_every_s=0)
    await connection.aclose()
    yield sock
    process.kill()
    await process.wait()


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
    process = await _start_shim(tmp_path / "fn", short_dir / "s.sock")

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
        assert await process.wait() == shim.EXIT_ORPHANED
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_connect_when_ready_fails_fast_when_the_runtime_exits(tmp_path: Path, short_dir: Path) -> None:
    process = await _start_shim(tmp_path / "does-not-exist", short_dir / "s.sock")

    async def exited() -> str | None:
        return None if process.returncode is None else f"status {process.returncode}"

    with pytest.raises(ExecutorError, match="exited during startup"):
        await connect_when_ready(short_dir / "s.sock", timeout_s=60, exit_reason=exited, check_every_s=0)
    await process.wait()


def _frames(*frames: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(frame)) + frame for frame in frames)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6), st.integers(1, 50))
def test_receiver_reads_frames_however_the_bytes_arrive(frames: list[bytes], piece: int) -> None:
    """Frames come back whole and in order whether they arrive together or in small pieces, and
    a clean end of stream at a frame start ends the connection quietly."""
    host, shim_end = socket.socketpair()
    with host, shim_end:
        data = _frames(*frames)
        for at in range(0, len(data), piece):
            host.sendall(data[at : at + piece])
        host.shutdown(socket.SHUT_WR)
        receiver = shim.Receiver(shim_end)
        got = [receiver.frame(max_bytes=1000, at_message_start=True) for _ in frames]
        assert got == frames
        assert receiver.frame(max_bytes=1000, at_message_start=True) is None


@pytest.mark.parametrize(
    ("data", "error"),
    [(_frames(b"abcdef")[:-2], "middle of a frame"), (struct.pack(">I", 5000), "exceeds the limit")],
)
def test_receiver_refuses_cut_and_oversized_frames(data: bytes, error: str) -> None:
    host, shim_end = socket.socketpair()
    with host, shim_end:
        host.sendall(data)
        host.shutdown(socket.SHUT_WR)
        with pytest.raises(shim.ProtocolError, match=error):
            shim.Receiver(shim_end).frame(max_bytes=1000, at_message_start=True)


def test_a_small_answer_goes_out_in_one_send() -> None:
    """One send per answer: the host wakes once, not twice."""
    host, shim_end = socket.socketpair()
    with host, shim_end:
        header = {"v": 1, "ok": True, "duration_s": 0.0}
        shim.send_message(shim_end, header, b'{"n":1}')
        shim_end.shutdown(socket.SHUT_WR)
        raw = json.dumps(header, separators=(",", ":")).encode()
        assert host.recv(1 << 16) == _frames(raw, b'{"n":1}')


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


def test_the_fast_command_line_parser_agrees_with_argparse() -> None:
    argv = ["--socket", "/run/x.sock", "--code-dir", "/fn", "--handler", "pkg.mod:main", "--concurrency", "3"]
    fast = shim._parse_fast(argv)
    assert fast is not None and vars(fast) == vars(shim._parse_with_argparse(argv))
    assert fast.concurrency == 3 and fast.rlimit_as_mb == 0 and fast.handler == "pkg.mod:main"
    # Anything unusual goes to argparse, which explains and exits with status 2.
    for bad in (
        ["--handler"],
        ["--handler", "m:f", "--bogus", "1"],
        ["--handler", "m:f", "--concurrency", "0"],
    ):
        assert shim._parse_fast(bad) is None
        with pytest.raises(SystemExit) as caught:
            shim._parse_args(bad)
        assert caught.value.code == 2


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ("m:f", True),
        ("a.b_c.d:_f1", True),
        ("m:f:g", False),
        ("1m:f", False),
        ("m.:f", False),
        ("é:f", False),
    ],
)
def test_handler_specs(spec: str, valid: bool) -> None:
    assert shim._valid_handler(spec) is valid


# --- a call's output ------------------------------------------------------------------------------


def _printer(value: Any) -> Any:
    print(value["text"] * value.get("times", 1), end="")
    print("!", file=sys.stderr)
    return "done"


def test_a_calls_output_is_its_own_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", shim.RoutedStream(sys.stdout))
    monkeypatch.setattr(sys, "stderr", shim.RoutedStream(sys.stderr))
    header, body, logs = shim.invoke_capturing(_printer, b'{"text": "hi "}', max_result_bytes=1024)
    assert (header["ok"], body, logs) == (True, b'"done"', b"hi !\n")
    # A call that prints a megabyte keeps its cap and says how much it dropped (the MiB less 1000,
    # and "!\n").
    payload = json.dumps({"text": "x", "times": 1 << 20}).encode()
    _, _, capped = shim.invoke_capturing(_printer, payload, max_result_bytes=1024, max_log_bytes=1000)
    assert capped.startswith(b"x" * 1000) and b"1047578 more bytes dropped" in capped and len(capped) < 1100
    # Nothing printed: nothing sent.
    assert shim.invoke_capturing(_handler, b"1", max_result_bytes=1024)[2] == b""


def test_concurrent_calls_keep_their_own_output(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr(sys, "stdout", shim.RoutedStream(sys.stdout))
    barrier = threading.Barrier(8)
    got: dict[int, bytes] = {}

    def chatty(value: Any) -> Any:
        barrier.wait()
        for _ in range(200):
            print(f"<{value}>", end="")
        return value

    def call(n: int) -> None:
        got[n] = shim.invoke_capturing(chatty, str(n).encode(), max_result_bytes=1024)[2]

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == {n: f"<{n}>".encode() * 200 for n in range(8)}


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

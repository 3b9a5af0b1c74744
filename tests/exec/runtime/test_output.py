"""A call's output in the shim (`p2pfaas.exec.runtime.output`): what the call's thread prints is
that call's, capped with a note of what was dropped; other threads write to the real stream."""

from __future__ import annotations

import io
import json
import sys
import threading
from typing import Any

import pytest

from p2pfaas.exec.runtime import output
from p2pfaas.exec.runtime.function import invoke_capturing


def _handler(value: Any) -> Any:
    return {"got": value}


def _printer(value: Any) -> Any:
    print(value["text"] * value.get("times", 1), end="")
    print("!", file=sys.stderr)
    return "done"


def test_a_calls_output_is_its_own_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", output.RoutedStream(sys.stdout))
    monkeypatch.setattr(sys, "stderr", output.RoutedStream(sys.stderr))
    header, body, logs = invoke_capturing(_printer, b'{"text": "hi "}', max_result_bytes=1024)
    assert (header["ok"], body, logs) == (True, b'"done"', b"hi !\n")
    # A call that prints a megabyte keeps its cap and says how much it dropped (the MiB less 1000,
    # and "!\n").
    payload = json.dumps({"text": "x", "times": 1 << 20}).encode()
    _, _, capped = invoke_capturing(_printer, payload, max_result_bytes=1024, max_log_bytes=1000)
    assert capped.startswith(b"x" * 1000) and b"1047578 more bytes dropped" in capped and len(capped) < 1100
    # Nothing printed: nothing sent.
    assert invoke_capturing(_handler, b"1", max_result_bytes=1024)[2] == b""


def test_concurrent_calls_keep_their_own_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", output.RoutedStream(sys.stdout))
    barrier = threading.Barrier(8)
    got: dict[int, bytes] = {}

    def chatty(value: Any) -> Any:
        barrier.wait()
        for _ in range(200):
            print(f"<{value}>", end="")
        return value

    def call(n: int) -> None:
        got[n] = invoke_capturing(chatty, str(n).encode(), max_result_bytes=1024)[2]

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == {n: f"<{n}>".encode() * 200 for n in range(8)}


def test_output_keeps_its_limit_in_bytes_and_counts_the_rest() -> None:
    out = output.Output(5)
    out.add("abc")
    out.add("é€")  # 5 bytes of UTF-8: 2 fit
    assert bytes(out.data) == "abcé".encode() and out.dropped == 3
    assert (
        out.encoded() == "abcé".encode() + b"\n[p2pfaas: output truncated at 5 bytes; 3 more bytes dropped]\n"
    )
    assert output.Output(5).encoded() == b""


def test_writes_outside_a_call_reach_the_real_stream() -> None:
    real = io.StringIO()
    stream = output.RoutedStream(real)
    assert stream.write("outside\n") == 8
    stream.flush()
    assert real.getvalue() == "outside\n" and stream.getvalue() == "outside\n"  # the rest is the real one's
    output.calls_output.out = output.Output(100)
    try:
        stream.write("inside")
        with pytest.raises(TypeError, match="must be str"):
            stream.write(b"bytes")  # type: ignore[arg-type]
    finally:
        output.calls_output.out = None
    assert real.getvalue() == "outside\n"

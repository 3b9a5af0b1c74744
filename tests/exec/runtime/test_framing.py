"""The shim's framing (`p2pfaas.exec.runtime.framing`): frames read whole however they arrive,
cut and oversized ones refused, a small answer sent at once, requests checked."""

from __future__ import annotations

import json
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.exec.runtime import framing


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
        receiver = framing.Receiver(shim_end)
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
        with pytest.raises(framing.ProtocolError, match=error):
            framing.Receiver(shim_end).frame(max_bytes=1000, at_message_start=True)


def test_a_small_answer_goes_out_in_one_send() -> None:
    """One send per answer: the host wakes once, not twice."""
    host, shim_end = socket.socketpair()
    with host, shim_end:
        header = {"v": 1, "ok": True, "duration_s": 0.0}
        framing.send_message(shim_end, header, b'{"n":1}')
        shim_end.shutdown(socket.SHUT_WR)
        raw = json.dumps(header, separators=(",", ":")).encode()
        assert host.recv(1 << 16) == _frames(raw, b'{"n":1}')


def _received(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(1 << 16):
        data += chunk
    return data


def test_a_large_answer_and_its_output_arrive_as_three_frames() -> None:
    host, shim_end = socket.socketpair()
    with host, shim_end:
        body = b"x" * (200 * 1024)  # over one chunk: sent apart from its header
        header: dict[str, object] = {"v": 1, "ok": True}
        framing.send_message(shim_end, header, body, b"printed\n")
        shim_end.shutdown(socket.SHUT_WR)
        assert header["logs"] == 8  # the header says how long the third frame is
        raw = json.dumps(header, separators=(",", ":")).encode()
        assert _received(host) == _frames(raw, body, b"printed\n")


@pytest.mark.parametrize("op", ["invoke", "ping"])
def test_a_request_names_its_op(op: str) -> None:
    assert framing.parse_request(json.dumps({"v": 1, "op": op}).encode()) == op


@pytest.mark.parametrize(
    ("raw", "error"),
    [(b"{", "not JSON"), (b"[]", "unsupported"), (b'{"v": 2, "op": "ping"}', "unsupported"),
     (b'{"v": 1, "op": "exec"}', "unknown op"), (b'{"v": 1}', "unknown op")],
)  # fmt: skip
def test_any_other_request_is_a_protocol_error(raw: bytes, error: str) -> None:
    with pytest.raises(framing.ProtocolError, match=error):
        framing.parse_request(raw)

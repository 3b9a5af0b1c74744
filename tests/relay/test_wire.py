"""Relay frames (`p2pfaas.relay.wire`): tunnel frames round-trip and their chunks are bounded."""

from __future__ import annotations

import pytest

from p2pfaas import codec
from p2pfaas.errors import DecodeError
from p2pfaas.relay.wire import MAX_CHUNK, TunnelAck, TunnelClose, TunnelData, TunnelOpen


@pytest.mark.parametrize(
    "frame",
    [TunnelOpen(3), TunnelData(3, b"\x17\x03\x03 record"), TunnelAck(3, 4096), TunnelClose(3, "done")],
)
def test_tunnel_frames_round_trip(frame: codec.Message) -> None:
    assert codec.decode(codec.encode(frame)) == frame


def test_a_chunk_larger_than_a_frame_holds_is_refused() -> None:
    with pytest.raises(DecodeError):
        codec.decode_as(TunnelData, codec.encode(TunnelData(1, bytes(MAX_CHUNK + 1))))
    with pytest.raises(DecodeError):
        codec.decode_as(TunnelClose, codec.encode(TunnelClose(1, "x" * 201)))

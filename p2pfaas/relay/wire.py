"""The relay's frames (codec tags 130-134, 139 and 140): the handshake that binds a WebSocket to a
node's key, and the tunnels it carries: byte streams, flow-controlled by a window per stream, each
holding one TLS connection from a caller to the node (the relay passes records it cannot read).

This module only declares shapes and size limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from p2pfaas.codec import MaxLen, Message, message
from p2pfaas.tunnel import MAX_CHUNK as MAX_CHUNK  # the caller's chunks are the link's frames
from p2pfaas.tunnel import MAX_FRAME as MAX_FRAME

NONCE_BYTES = 32
WINDOW = 1 << 20  # bytes of a stream sent and not yet acknowledged (then the sender waits)

Url = Annotated[str, MaxLen(512)]
Chunk = Annotated[bytes, MaxLen(MAX_CHUNK)]


@message(130)
@dataclass(frozen=True)
class RelayChallenge(Message):
    """Relay -> node, first frame: sign this nonce for this relay."""

    nonce: Annotated[bytes, MaxLen(NONCE_BYTES)]
    relay_url: Url


@message(131)
@dataclass(frozen=True)
class RelayHello(Message):
    """Node -> relay: the challenge, signed with the node key (its id is the key's id)."""

    nonce: Annotated[bytes, MaxLen(NONCE_BYTES)]
    relay_url: Url
    issued_at: float
    signer: Annotated[bytes, MaxLen(32)]
    signature: Annotated[bytes, MaxLen(64)]


@message(132)
@dataclass(frozen=True)
class RelayWelcome(Message):
    """Relay -> node: the handshake held; callers reach the node at `url`."""

    node_id: Annotated[str, MaxLen(64)]
    url: Url


@message(133)
@dataclass(frozen=True)
class TunnelOpen(Message):
    """Relay -> node: a caller opened tunnel `stream`; the node answers it with its TLS listener."""

    stream: int


@message(134)
@dataclass(frozen=True)
class TunnelData(Message):
    """Either way: bytes of tunnel `stream` (TLS records the relay cannot read)."""

    stream: int
    data: Chunk


@message(139)
@dataclass(frozen=True)
class TunnelAck(Message):
    """Either way: `count` bytes of `stream` were passed on; the sender may send that many more."""

    stream: int
    count: int


@message(140)
@dataclass(frozen=True)
class TunnelClose(Message):
    """Either way: tunnel `stream` is over (after every byte sent before this frame)."""

    stream: int
    reason: Annotated[str, MaxLen(200)]

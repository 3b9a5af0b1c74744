"""The relay's frames (codec tags 130-139): the handshake that binds a WebSocket to a node's key, and
the requests and answers it carries. Headers travel as a flat tuple (name, value, name, value, ...).

This module only declares shapes and size limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from p2pfaas.codec import MaxLen, Message, message
from p2pfaas.messages import MAX_PAYLOAD_BYTES

NONCE_BYTES = 32
MAX_HEADERS = 64  # name/value pairs
MAX_BODY_BYTES = MAX_PAYLOAD_BYTES + 64 * 1024  # an invocation's payload and its envelope

Url = Annotated[str, MaxLen(512)]
Headers = Annotated[tuple[Annotated[str, MaxLen(4096)], ...], MaxLen(2 * MAX_HEADERS)]
Body = Annotated[bytes, MaxLen(MAX_BODY_BYTES)]


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
class RelayRequest(Message):
    """Relay -> node: one HTTP request that arrived for the node; `stream` pairs it with its answer."""

    stream: int
    method: Annotated[str, MaxLen(16)]
    path: Annotated[str, MaxLen(2048)]  # path and query, below the node's base URL ("/v1/invoke")
    headers: Headers
    body: Body


@message(134)
@dataclass(frozen=True)
class RelayResponse(Message):
    """Node -> relay: the answer to request `stream`."""

    stream: int
    status: int
    headers: Headers
    body: Body


# Headers that describe one hop, not the request (RFC 9110 section 7.6.1), and those the hop recomputes.
HOP_HEADERS = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip


def flatten(headers: object) -> tuple[str, ...]:
    """A multidict's end-to-end headers as a flat tuple, at most MAX_HEADERS of them."""
    items = getattr(headers, "items")()  # noqa: B009
    pairs = [(k, v) for k, v in items if k.lower() not in HOP_HEADERS][:MAX_HEADERS]
    return tuple(x for pair in pairs for x in pair)


def pairs(flat: tuple[str, ...]) -> list[tuple[str, str]]:
    return list(zip(flat[::2], flat[1::2], strict=False))

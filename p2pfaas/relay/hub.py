"""The relay's side: hold the WebSockets of nodes behind NAT and carry callers' tunnels over them.

`RelayHub.routes()` adds `GET /v1/relay/connect` (a node's WebSocket) and `GET /v1/tunnel/<node id>`
(a caller's WebSocket: a byte tunnel to that node) to an aiohttp app. A node is bound to its socket by
signing a fresh challenge that names this relay; a newer socket of the same key replaces the older
one (a node that reconnected after a flap). Each tunnel is a stream on the node's socket
(`relay/stream.py`): the caller runs TLS to the node inside it, pinned to the node's identity, so the
relay passes records it can neither read nor forge. Bounded: `max_links` nodes, `max_streams` tunnels
per node (then 503), a window of bytes per stream; a node not connected here is a 502.

It does not choose who may relay (the owner decides whether to mount the routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from p2pfaas import codec, signing
from p2pfaas.clock import wall_time
from p2pfaas.errors import DecodeError, Refused, SignatureError
from p2pfaas.relay import wire
from p2pfaas.relay.stream import Stream
from p2pfaas.tunnel import HEARTBEAT_S, relay_path, tunnel_path

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
HELLO_SKEW_S = 300.0
MAX_HANDSHAKES = 64  # sockets at once that have not proved a key yet
_NODE_ID = re.compile(r"[0-9a-f]{40}")


@dataclass
class _Link:
    node_id: str
    ws: web.WebSocketResponse
    streams: dict[int, Stream] = field(default_factory=dict)
    next_stream: int = 0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def put(self, frame: codec.Message) -> None:
        async with self.send_lock:
            await self.ws.send_bytes(codec.encode(frame))

    def end_streams(self) -> None:
        for stream in self.streams.values():
            stream.ended()
        self.streams.clear()


@dataclass
class RelayStats:
    """Counters; read them, do not write them."""

    handshakes: int = 0
    refused_handshakes: int = 0
    replaced: int = 0
    tunnels: int = 0
    not_connected: int = 0
    busy: int = 0
    overruns: int = 0  # streams dropped because the node sent past the window


class RelayHub:
    """Driven by aiohttp: mount `routes()`; set `base_url` once the owner knows where it is reachable."""

    def __init__(
        self,
        *,
        base_url: str = "",
        max_links: int = 1024,
        max_streams: int = 64,
        clock: Callable[[], float] = wall_time,
    ) -> None:
        self.base_url = base_url
        self.max_links = max_links
        self.max_streams = max_streams
        self.clock = clock
        self.links: dict[str, _Link] = {}
        self.stats = RelayStats()
        self._handshakes = 0  # sockets not yet bound to a node

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/relay/connect", self.connect),
            web.get(tunnel_path("{node_id}"), self.tunnel),
        ]

    def url_for(self, node_id: str) -> str:
        return self.base_url + relay_path(node_id)

    async def aclose(self) -> None:
        for link in list(self.links.values()):
            link.end_streams()
            await link.ws.close()

    # -- a node's socket ------------------------------------------------------------------------------------
    async def connect(self, request: web.Request) -> web.StreamResponse:
        if not self.base_url:
            raise Refused("this relay does not know its own address yet; try again shortly", status=503)
        if self._handshakes >= MAX_HANDSHAKES:
            raise Refused("this relay is busy binding other nodes; try again shortly", status=503)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=wire.MAX_FRAME)
        await ws.prepare(request)
        self._handshakes += 1
        try:
            node_id = await self._handshake(ws)
        finally:
            self._handshakes -= 1
        # Full is judged once the node is known: one that replaces its own stale link takes no room.
        full = node_id is not None and node_id not in self.links and len(self.links) >= self.max_links
        if node_id is None or full:
            self.stats.refused_handshakes += 1
            code = aiohttp.WSCloseCode.TRY_AGAIN_LATER if full else aiohttp.WSCloseCode.POLICY_VIOLATION
            await ws.close(code=code)
            return ws
        link = _Link(node_id, ws)
        old = self.links.pop(node_id, None)
        if old is not None:
            self.stats.replaced += 1
            old.end_streams()
            await old.ws.close()
        self.links[node_id] = link
        self.stats.handshakes += 1
        try:
            await ws.send_bytes(codec.encode(wire.RelayWelcome(node_id=node_id, url=self.url_for(node_id))))
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.BINARY or not self._on_answer(link, frame.data):
                    break
        finally:
            if self.links.get(node_id) is link:
                del self.links[node_id]
            link.end_streams()
            await ws.close()
        return ws

    async def _handshake(self, ws: web.WebSocketResponse) -> str | None:
        """The node id the socket proved, or None (a bad or late hello)."""
        nonce = secrets.token_bytes(wire.NONCE_BYTES)
        await ws.send_bytes(codec.encode(wire.RelayChallenge(nonce=nonce, relay_url=self.base_url)))
        try:
            frame = await ws.receive(timeout=HELLO_TIMEOUT_S)
            if frame.type != aiohttp.WSMsgType.BINARY:
                return None
            hello = codec.decode_as(wire.RelayHello, frame.data)
            key = signing.verify(hello)
        except (TimeoutError, DecodeError, SignatureError):
            return None
        if hello.nonce != nonce or hello.relay_url != self.base_url:
            return None
        if abs(self.clock() - hello.issued_at) > HELLO_SKEW_S:
            return None
        return key.key_id

    def _on_answer(self, link: _Link, data: bytes) -> bool:
        """Pass a frame from the node to its stream; False drops the link (a malformed frame)."""
        try:
            frame = codec.decode(data)
        except DecodeError:
            frame = None
        if not isinstance(frame, wire.TunnelData | wire.TunnelAck | wire.TunnelClose):
            log.warning("node %s sent a malformed relay frame; dropping its link", link.node_id[:12])
            return False
        stream = link.streams.get(frame.stream)
        if stream is None:
            return True  # a frame of a tunnel already over
        if isinstance(frame, wire.TunnelData):
            if not stream.deliver(frame.data):
                self.stats.overruns += 1
                log.warning("node %s overran tunnel %d's window", link.node_id[:12], frame.stream)
                stream.drop()  # the tunnel's handler ends and tells the node
        elif isinstance(frame, wire.TunnelAck):
            stream.acknowledged(frame.count)
        else:
            stream.ended()
        return True

    # -- a caller's tunnel to a node ------------------------------------------------------------------------
    async def tunnel(self, request: web.Request) -> web.StreamResponse:
        node_id = request.match_info["node_id"]
        link = self.links.get(node_id) if _NODE_ID.fullmatch(node_id) else None
        if link is None:
            self.stats.not_connected += 1
            raise Refused(f"node {node_id[:40]} is not connected to this relay", status=502)
        if len(link.streams) >= self.max_streams:
            self.stats.busy += 1
            raise Refused(f"node {node_id[:12]} has {self.max_streams} tunnels open here", status=503)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=wire.MAX_FRAME)
        await ws.prepare(request)
        number = link.next_stream
        link.next_stream += 1
        stream = link.streams[number] = Stream(number, link.put)
        self.stats.tunnels += 1
        downstream = asyncio.create_task(_to_caller(stream, ws))
        try:
            await link.put(wire.TunnelOpen(stream=number))
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    break
                await stream.send(message.data)
        except (ConnectionError, RuntimeError):  # the node's socket went away under us
            pass
        finally:
            if link.streams.get(number) is stream:
                del link.streams[number]
            with contextlib.suppress(ConnectionError, RuntimeError):
                await stream.close("the caller closed the tunnel")
            stream.ended()
            await downstream
            await ws.close()
        return ws


async def _to_caller(stream: Stream, ws: web.WebSocketResponse) -> None:
    """The node's bytes to the caller, acknowledged once sent; closes the caller's socket at the end."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        while data := await stream.receive():
            await ws.send_bytes(data)
    await ws.close()

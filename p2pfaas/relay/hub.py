"""The relay's side: hold the WebSockets of nodes behind NAT and carry HTTP requests over them.

`RelayHub.routes()` adds `GET /v1/relay/connect` (a node's WebSocket) and `/v1/relay/<node id>/<path>`
(any method: a request for that node) to an aiohttp app. A node is bound to its socket by signing a
fresh challenge that names this relay; a newer socket of the same key replaces the older one (a node
that reconnected after a flap). Bounded: `max_links` nodes, `max_streams` requests in flight per node
(then 503), a request waits at most `request_timeout_s` (then 504); a node not connected here is a 502.

It does not choose who may relay (the owner decides whether to mount the routes) or look inside bodies.
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

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
HELLO_SKEW_S = 300.0
HEARTBEAT_S = 10.0  # a silent peer is dropped after about twice this
_NODE_ID = re.compile(r"[0-9a-f]{40}")


def relay_path(node_id: str) -> str:
    """The path below a relay's base URL where it answers for `node_id`."""
    return f"/v1/relay/{node_id}"


def is_relayed(url: str) -> bool:
    """Whether a node URL reaches its node through a relay (`RELAY/v1/relay/<id>`)."""
    return re.search(r"/v1/relay/[0-9a-f]{40}/?$", url) is not None


@dataclass
class _Link:
    node_id: str
    ws: web.WebSocketResponse
    pending: dict[int, asyncio.Future[wire.RelayResponse]] = field(default_factory=dict)
    next_stream: int = 0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def fail_pending(self, why: str) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(Refused(why, status=502))
        self.pending.clear()


@dataclass
class RelayStats:
    """Counters; read them, do not write them."""

    handshakes: int = 0
    refused_handshakes: int = 0
    replaced: int = 0
    requests: int = 0
    not_connected: int = 0
    busy: int = 0
    timeouts: int = 0


class RelayHub:
    """Driven by aiohttp: mount `routes()`; set `base_url` once the owner knows where it is reachable."""

    def __init__(
        self,
        *,
        base_url: str = "",
        max_links: int = 1024,
        max_streams: int = 64,
        request_timeout_s: float = 330.0,
        clock: Callable[[], float] = wall_time,
    ) -> None:
        self.base_url = base_url
        self.max_links = max_links
        self.max_streams = max_streams
        self.request_timeout_s = request_timeout_s
        self.clock = clock
        self.links: dict[str, _Link] = {}
        self.stats = RelayStats()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/relay/connect", self.connect),
            web.route("*", "/v1/relay/{node_id}/{tail:.*}", self.forward),
        ]

    def url_for(self, node_id: str) -> str:
        return self.base_url + relay_path(node_id)

    async def aclose(self) -> None:
        for link in list(self.links.values()):
            link.fail_pending("the relay is stopping")
            await link.ws.close()

    # -- a node's socket ------------------------------------------------------------------------------------
    async def connect(self, request: web.Request) -> web.StreamResponse:
        if not self.base_url:
            raise Refused("this relay does not know its own address yet; try again shortly", status=503)
        if len(self.links) >= self.max_links:
            raise Refused("this relay holds as many nodes as it will; try another", status=503)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=wire.MAX_BODY_BYTES + 64 * 1024)
        await ws.prepare(request)
        node_id = await self._handshake(ws)
        if node_id is None:
            self.stats.refused_handshakes += 1
            await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION)
            return ws
        link = _Link(node_id, ws)
        old = self.links.pop(node_id, None)
        if old is not None:
            self.stats.replaced += 1
            old.fail_pending("the node reconnected")
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
            link.fail_pending(f"node {node_id[:12]} disconnected from this relay")
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
        try:
            answer = codec.decode_as(wire.RelayResponse, data)
        except DecodeError:
            log.warning("node %s sent a malformed relay frame; dropping its link", link.node_id[:12])
            return False
        future = link.pending.pop(answer.stream, None)
        if future is not None and not future.done():
            future.set_result(answer)
        return True  # an answer to a request given up on is dropped

    # -- a request for a node -------------------------------------------------------------------------------
    async def forward(self, request: web.Request) -> web.StreamResponse:
        node_id = request.match_info["node_id"]
        link = self.links.get(node_id) if _NODE_ID.fullmatch(node_id) else None
        if link is None:
            self.stats.not_connected += 1
            raise Refused(f"node {node_id[:40]} is not connected to this relay", status=502)
        if len(link.pending) >= self.max_streams:
            self.stats.busy += 1
            raise Refused(
                f"node {node_id[:12]} has {self.max_streams} relayed requests in flight", status=503
            )
        path = "/" + request.match_info["tail"] + (f"?{request.query_string}" if request.query_string else "")
        body = await request.read()
        stream = link.next_stream
        link.next_stream += 1
        future: asyncio.Future[wire.RelayResponse] = asyncio.get_running_loop().create_future()
        link.pending[stream] = future
        self.stats.requests += 1
        frame = wire.RelayRequest(
            stream=stream, method=request.method, path=path, headers=wire.flatten(request.headers), body=body
        )
        try:
            async with asyncio.timeout(self.request_timeout_s):
                async with link.send_lock:
                    await link.ws.send_bytes(codec.encode(frame))
                answer = await future
        except TimeoutError:
            self.stats.timeouts += 1
            raise Refused(
                f"node {node_id[:12]} did not answer through the relay in time", status=504
            ) from None
        except (ConnectionError, RuntimeError) as exc:  # the socket closed under us
            raise Refused(f"node {node_id[:12]} disconnected from this relay: {exc}", status=502) from None
        finally:
            link.pending.pop(stream, None)
        response = web.Response(status=answer.status, body=answer.body)
        for name, value in wire.pairs(answer.headers):
            with contextlib.suppress(ValueError):
                response.headers.add(name, value)
        return response

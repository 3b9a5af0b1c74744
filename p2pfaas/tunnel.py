"""The caller's side of a relay: TLS to a node behind NAT, inside a byte tunnel through its relay.

A node behind NAT is announced at a relayed URL, `RELAY/v1/relay/<node id>`. Calling it, a caller
opens a WebSocket to `RELAY/v1/tunnel/<node id>` (the relay carries it as a stream to the node,
`p2pfaas.relay`) and runs TLS to the node inside it, pinned to the node id as a direct https URL is
(`p2pfaas.tls`). So the relay passes records it cannot read, and a relay that answers for the node
itself (or hands the tunnel to someone else) fails the pin before a byte of the request is sent.

`session()` makes the aiohttp session that can do this: its `PeerConnector` is aiohttp's own
TCPConnector, except that the connections of a tunnel URL (`route()` turns a relayed URL into one)
are made through the relay. aiohttp pools them per node, so warm calls reuse one tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from p2pfaas import tls
from p2pfaas.lifecycle import TaskSet

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.tracing import Trace

TUNNEL_HOST = ".tunnel.invalid"  # `<node id>.tunnel.invalid`: a name no resolver answers (RFC 2606)
VIA_HEADER = "X-P2PFaaS-Via"  # on a tunnel URL's request: the relay to tunnel through
HEARTBEAT_S = 10.0  # of every relay WebSocket (p2pfaas.relay too): a silent peer goes after about twice this
MAX_CHUNK = 64 * 1024  # bytes of a tunnel's WebSocket message (and of a relay link's TunnelData)
MAX_FRAME = MAX_CHUNK + 1024  # a WebSocket message on a link or a tunnel, with its envelope
_RELAYED = re.compile(r"^(?P<relay>.+)/v1/relay/(?P<node>[0-9a-f]{40})(?P<tail>/.*)?$")


class TunnelRefused(aiohttp.ClientConnectionError):
    """The relay opened no tunnel to the node (not connected there, busy, or no relay named)."""


def relay_path(node_id: str) -> str:
    """The path below a relay's base URL where its node `node_id` is announced."""
    return f"/v1/relay/{node_id}"


def tunnel_path(node_id: str) -> str:
    """The path below a relay's base URL where callers open a tunnel to `node_id`."""
    return f"/v1/tunnel/{node_id}"


def is_relayed(url: str) -> bool:
    """Whether a node's base URL reaches its node through a relay (`RELAY/v1/relay/<id>`)."""
    return re.search(r"/v1/relay/[0-9a-f]{40}/?$", url) is not None


def route(url: str) -> tuple[str, str | None]:
    """Where to send a request for `url`: a relayed URL (with a path below it) becomes the tunnel URL
    `https://<id>.tunnel.invalid/n/<id><path>` and the relay to go through; any other URL is itself."""
    match = _RELAYED.match(url)
    if match is None:
        return url, None
    node_id = match["node"]
    return f"https://{node_id}{TUNNEL_HOST}{tls.identity_path(node_id)}{match['tail'] or ''}", match["relay"]


def session(**options: Any) -> aiohttp.ClientSession:
    """An aiohttp session that reaches relayed nodes too (through `PeerConnector`)."""
    return aiohttp.ClientSession(connector=PeerConnector(), **options)


def _client_context() -> ssl.SSLContext:
    # Certificates are self-signed on node keys: the pin, not a CA, decides (IdentityPin.check).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_CONTEXT = _client_context()


class PeerConnector(aiohttp.TCPConnector):
    """aiohttp's TCPConnector, and tunnels for tunnel URLs (`route`).

    It overrides `_create_connection`, the hook aiohttp's own UnixConnector overrides: a tunnel
    connection is a socket pair whose far end is pumped to and from the relay's WebSocket, with TLS to
    the node on the near end, checked against the node's identity before it is handed to aiohttp."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._relay_session: aiohttp.ClientSession | None = None
        self._pumps = TaskSet()

    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> ResponseHandler:
        host = req.url.host or ""
        if not host.endswith(TUNNEL_HOST):
            return await super()._create_connection(req, traces, timeout)
        node_id, relay = host[: -len(TUNNEL_HOST)], req.headers.get(VIA_HEADER, "")
        if not re.fullmatch(r"[0-9a-f]{40}", node_id) or not relay.startswith(("http://", "https://")):
            raise TunnelRefused(f"{req.url}: not a tunnel this connector can open")
        if self._relay_session is None:
            # Relays are direct: no tunnel inside a tunnel. Unlimited here: each of its connections
            # is a tunnel the outer pool holds and bounds (idle ones too, which this one cannot see).
            self._relay_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            ws = await self._relay_session.ws_connect(
                relay + tunnel_path(node_id),
                ssl=tls.ssl_for(relay),  # a node relay's https URL names the identity it must prove
                heartbeat=HEARTBEAT_S,
                max_msg_size=MAX_FRAME,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as exc:  # 502: not connected there; 503: busy
            raise TunnelRefused(
                f"relay {relay} opened no tunnel to {node_id[:12]}: HTTP {exc.status}"
            ) from None
        near, far = socket.socketpair()
        pump = self._pumps.spawn(_pump(ws, far))
        transport: asyncio.BaseTransport | None = None
        try:
            transport, proto = await self._loop.create_connection(
                self._factory, sock=near, ssl=_CONTEXT, server_hostname=host
            )
            tls.pin_for(node_id).check(transport)
        except (OSError, ssl.SSLError) as exc:  # no TLS to the node came up: nothing was sent
            _abandon(transport, near, pump)
            await ws.close()
            raise TunnelRefused(f"relay {relay}: no TLS to {node_id[:12]} through it: {exc!r}") from None
        except BaseException:
            _abandon(transport, near, pump)
            await ws.close()  # also if the pump never ran
            raise
        return proto

    async def close(self, *, abort_ssl: bool = False) -> None:
        await super().close(abort_ssl=abort_ssl)
        await self._pumps.cancel()
        if self._relay_session is not None:
            await self._relay_session.close()


def _abandon(transport: asyncio.BaseTransport | None, near: socket.socket, pump: asyncio.Task[None]) -> None:
    if transport is not None:
        transport.abort()  # type: ignore[attr-defined]
    near.close()
    pump.cancel()


async def _pump(ws: aiohttp.ClientWebSocketResponse, far: socket.socket) -> None:
    """Bytes between the socket pair's far end and the relay's WebSocket, until either side ends."""
    reader, writer = await asyncio.open_connection(sock=far, limit=MAX_CHUNK)

    async def up() -> None:
        while data := await reader.read(MAX_CHUNK):
            await ws.send_bytes(data)
        await ws.close()

    async def down() -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                break
            writer.write(message.data)
            await writer.drain()

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        writer.close()  # first: a second cancellation may cut what follows short
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close()

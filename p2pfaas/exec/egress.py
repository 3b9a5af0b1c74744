"""Declared, opt-in network egress: a CONNECT proxy per function instance, on a unix socket.

Function containers have no network (`network_mode=none`). A function whose signed manifest declares
`egress = ["api.example.org:443"]` may run on a node whose volunteer lends network (`node run
--egress`); its instance then gets a unix socket in its socket directory, served here, and the shim
inside forwards 127.0.0.1:3128 to it (`runtime/forwarder.py`), with `HTTPS_PROXY` set. So the
container still has no interface but loopback, and every byte out goes through this proxy, which:

- accepts only `CONNECT host:port` for an entry of the manifest's list, exactly (no other host,
  port or method: no plain-HTTP proxying, no redirects to follow);
- resolves the host itself and connects to an address that is public: never loopback, private,
  link-local, multicast, reserved or unspecified ones (what a function could use to reach the
  volunteer's router or LAN), unless the operator names a range in `allow_networks` (the network
  lab's TEST-NET hosts); it connects to the address it checked, so DNS cannot rebind in between;
- bounds connections per instance, the request head, the time to connect, and counts the bytes
  each way per function (`usage`), for the volunteer's caps and the bill.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Awaitable[list[str]]]  # host, port -> addresses
SOCKET_NAME = "egress.sock"  # in the instance's socket directory
PROXY_PORT = 3128  # where the shim listens inside the container (its own loopback)
MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 32  # open at once per instance
CHUNK = 64 * 1024


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def forbidden(address: str, allow: Sequence[Network]) -> str | None:
    """Why the proxy must not connect to `address`, or None when it may."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allow):
        return None
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


@dataclass
class Usage:
    sent: int = 0  # bytes from the function to the world
    received: int = 0


@dataclass
class EgressProxy:
    """One per executor; `serve(path, allowed, key)` opens an instance's socket."""

    allow_networks: tuple[Network, ...] = ()
    resolve: Resolve = resolve
    max_connections: int = MAX_CONNECTIONS
    usage: defaultdict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))  # by function digest

    async def serve(self, path: Path, allowed: Sequence[str], key: str) -> EgressServer:
        server = EgressServer(self, frozenset(e.lower() for e in allowed), key)
        await server.start(path)
        return server


class EgressRefused(Exception):
    """A request the proxy will not carry: answered with `status` and `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def connect_target(head: bytes, allowed: frozenset[str]) -> tuple[str, int]:
    """(host, port) of a request head `CONNECT host:port HTTP/1.x` naming an entry of `allowed`
    (lowercase "host:port"); EgressRefused says why any other head is not carried."""
    if len(head) > MAX_HEAD_BYTES:
        raise EgressRefused(400, "the request head is too long")
    method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
    target = rest.rpartition(" ")[0].strip().lower()
    if method != "CONNECT":
        raise EgressRefused(405, f"only CONNECT is proxied, not {method[:16]!r}")
    if target not in allowed:
        raise EgressRefused(403, f"{target[:270]!r} is not in the function's egress list")
    host, _, port = target.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:  # allowed entries are checked; be sure anyway
        raise EgressRefused(403, f"{target[:270]!r} names no port")
    return host, int(port)


class EgressServer:
    """The proxy of one instance; `aclose` when the instance goes."""

    def __init__(self, proxy: EgressProxy, allowed: frozenset[str], key: str) -> None:
        self.proxy, self.allowed, self.key = proxy, allowed, key
        self.refused = 0
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()  # the connections' handlers
        self._open = 0

    async def start(self, path: Path) -> None:
        self._server = await asyncio.start_unix_server(self._client, path=str(path), limit=MAX_HEAD_BYTES)
        path.chmod(0o666)  # noqa: ASYNC240  # the shim runs as another uid; its directory keeps others out

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)
        try:
            if self._open >= self.proxy.max_connections:
                await _answer(writer, 429, f"at most {self.proxy.max_connections} connections at once")
                return
            self._open += 1
            try:
                await self._tunnel(reader, writer)
            finally:
                self._open -= 1
        finally:
            writer.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return await _answer(writer, 400, "a CONNECT request head, within 8 KiB and 10 s")
        try:
            host, port = connect_target(head, self.allowed)
        except EgressRefused as refused:
            return await self._refuse(writer, refused.status, refused.reason)
        upstream = await self._connect(writer, host, port)
        if upstream is None:
            return None
        up_reader, up_writer = upstream
        await _answer(writer, 200, "connection established")
        usage = self.proxy.usage[self.key]
        try:
            await asyncio.gather(
                _pump(reader, up_writer, lambda n: setattr(usage, "sent", usage.sent + n)),
                _pump(up_reader, writer, lambda n: setattr(usage, "received", usage.received + n)),
            )
        finally:
            up_writer.close()
        return None

    async def _connect(
        self, writer: asyncio.StreamWriter, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            addresses = await self.proxy.resolve(host, port)
        except OSError as exc:
            await self._refuse(writer, 502, f"{host} does not resolve: {exc}")
            return None
        verdicts = {a: forbidden(a, self.proxy.allow_networks) for a in addresses}
        reasons = [why for why in verdicts.values() if why]
        permitted = [a for a, why in verdicts.items() if why is None]
        if not permitted:
            await self._refuse(writer, 403, f"{host}: {'; '.join(reasons) or 'no address'}")
            return None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                return await asyncio.open_connection(permitted[0], port, limit=CHUNK)  # the checked one
        except (OSError, TimeoutError) as exc:
            await _answer(writer, 502, f"{host}:{port} did not answer: {exc}")
            return None

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, reason: str) -> None:
        self.refused += 1
        log.info("egress of %s refused: %s", self.key[:12], reason)
        await _answer(writer, status, reason)


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = (reason + "\n").encode()
    head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Refused'}\r\n"
    if status != 200:
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    writer.write(head.encode() + b"\r\n" + (b"" if status == 200 else body))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Callable[[int], None]
) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(CHUNK):
            count(len(data))
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

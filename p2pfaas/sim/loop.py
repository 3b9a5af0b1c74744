"""`SimLoop`: the virtual-clock loop whose network endpoints live in an `InMemoryNetwork`; and `run()`.

Production code opens endpoints only through the running loop, so this loop is the simulator's one seam:
- `create_server` (aiohttp's `TCPSite`), `create_connection` (aiohttp's connector, after `sock_connect`),
  `create_datagram_endpoint` (rpcudp/kademlia) and `getaddrinfo` (names registered with `add_host(name=)`)
  are answered in memory. No real socket ever carries a byte.
- aiohttp 3.14's `TCPConnector` connects through aiohappyeyeballs: it makes a real, unconnected socket object,
  awaits `loop.sock_connect(sock, addr)`, then calls `loop.create_connection(factory, sock=sock)`. Here
  `sock_connect` runs the simulated handshake and remembers the socket as a token; `create_connection(sock=)`
  closes the real socket (it never touched the network) and returns an in-memory transport. So a stock
  `aiohttp.ClientSession()` works unchanged, for IP-literal URLs and for registered names.

What it does not do: TLS (`ssl=` raises NotImplementedError), `create_server(sock=)`, unix sockets or pipes
in memory (those stay real), `sock_sendall`/`sock_recv` on simulated connections.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import random
import socket
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from p2pfaas.sim.clock import START_TIME_S, VirtualClockLoop
from p2pfaas.sim.datagram import SimDatagramTransport
from p2pfaas.sim.fabric import Address
from p2pfaas.sim.faults import FaultOptions
from p2pfaas.sim.net import InMemoryNetwork, current_host
from p2pfaas.sim.server import SimServer

__all__ = ["SimLoop", "loop_factory", "network", "run"]

T = TypeVar("T")
_ProtocolT = TypeVar("_ProtocolT", bound=asyncio.BaseProtocol)


class SimLoop(VirtualClockLoop):
    """A `VirtualClockLoop` whose stream and datagram endpoints are in `network`. Driven like any loop."""

    def __init__(self, network: InMemoryNetwork, *, start_time_s: float = START_TIME_S) -> None:
        super().__init__(start_time_s=start_time_s)
        self.network = network
        network.attach(self)
        # Sockets that went through sock_connect, waiting for create_connection(sock=...).
        self._handshaken: weakref.WeakKeyDictionary[
            socket.socket, tuple[Address, Address, weakref.finalize[Any, Any]]
        ] = weakref.WeakKeyDictionary()

    # -- streams -----------------------------------------------------------------------------------------
    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        ssl: Any = None,
        sock: socket.socket | None = None,
        start_serving: bool = True,
        **_socket_options: Any,  # family, backlog, reuse_address, ...: meaningless in memory
    ) -> SimServer:
        if ssl is not None:
            raise NotImplementedError("the simulated network carries no TLS")
        if sock is not None:
            raise NotImplementedError("SimLoop cannot serve on a real socket")
        net = self.network
        names = [host] if host is None or isinstance(host, str) else list(host)
        # Binding an address registers it (a crashed host stays down until restart()).
        ips = list(dict.fromkeys(net.add_host(net.resolve(name)) for name in names))
        addresses: list[Address] = []
        try:
            for ip in ips:
                if not net.is_up(ip):
                    raise OSError(errno.EADDRNOTAVAIL, f"simulated host {ip} is down")
                # Port 0 picks one free port, then the same port on the other hosts, as most callers expect.
                wanted = port or (addresses[0][1] if addresses else 0)
                addresses.append((ip, net.bind_port("tcp", ip, wanted)))
        except OSError:
            for address in addresses:
                net.release_port("tcp", *address)
            raise
        server = SimServer(net, protocol_factory, addresses, contextvars.copy_context())
        net.add_server(server)
        if start_serving:
            await server.start_serving()
        return server

    async def create_connection(
        self,
        protocol_factory: Callable[[], _ProtocolT],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: Any = None,
        sock: socket.socket | None = None,
        local_addr: tuple[str, int] | None = None,
        **_socket_options: Any,  # family, proto, flags, server_hostname, happy_eyeballs_delay, ...
    ) -> tuple[asyncio.Transport, _ProtocolT]:
        if ssl:
            raise NotImplementedError("the simulated network carries no TLS")
        net = self.network
        if sock is not None:
            pending = self._handshaken.pop(sock, None)
            if pending is None:
                raise ValueError("SimLoop.create_connection(sock=) needs a socket connected by sock_connect")
            # The real socket was only a token for the handshake; the connection lives in memory.
            sock.close()
            local, remote, release_on_drop = pending
            release_on_drop.detach()
        else:
            if host is None or port is None:
                raise ValueError("host and port are required when sock is not given")
            remote = (net.resolve(host), int(port))
            local = await self._handshake(remote, local_addr)
        server = net.listener(remote)
        if server is None or not net.can_reach(local[0], remote[0]):
            # The listener went away (or the link was cut) between the handshake and now.
            net.release_port("tcp", *local)
            raise ConnectionResetError(errno.ECONNRESET, f"Connection to {remote} reset during setup")
        transport = net.open_stream(local, server, remote)
        protocol = protocol_factory()
        transport.start(protocol)
        return transport, protocol

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Handshake with a simulated listener; the socket is then only good for create_connection(sock=)."""
        if sock in self._handshaken:
            raise OSError(errno.EISCONN, "Transport endpoint is already connected")
        remote = (self.network.resolve(str(address[0])), int(address[1]))
        local = await self._handshake(remote, None)
        # If the caller drops the socket instead of handing it to create_connection, free the port.
        release_on_drop = weakref.finalize(sock, self.network.release_port, "tcp", *local)
        self._handshaken[sock] = local, remote, release_on_drop

    async def _handshake(self, remote: Address, local_addr: tuple[str, int] | None) -> Address:
        """SYN, then SYN-ACK or RST, one latency each way; SYNs lost to a cut link are retried (1, 2, 4 s...)
        until `connect_timeout_s`. Returns the client's bound address."""
        net = self.network
        src_host = net.add_host(current_host() if local_addr is None else net.resolve(local_addr[0]))
        if not net.is_up(src_host):
            raise OSError(errno.ENETUNREACH, f"Network is unreachable: simulated host {src_host} is down")
        local = (src_host, net.bind_port("tcp", src_host, 0 if local_addr is None else local_addr[1]))
        deadline = self.time() + net.options.connect_timeout_s
        retry_s = 1.0
        try:
            while True:
                await asyncio.sleep(net.delay_s(src_host, remote[0]))
                if net.can_reach(src_host, remote[0]):
                    net.record("tcp-syn", local, remote, 0)
                    listening = net.listener(remote) is not None
                    await asyncio.sleep(net.delay_s(remote[0], src_host))
                    if not listening:
                        net.stats.stream_refused += 1
                        raise ConnectionRefusedError(
                            errno.ECONNREFUSED, f"Connect call failed {remote}: connection refused"
                        )
                    if net.can_reach(remote[0], src_host):
                        return local
                remaining = deadline - self.time()
                if remaining <= 0:
                    raise TimeoutError(errno.ETIMEDOUT, f"Connect call failed {remote}: timed out")
                await asyncio.sleep(min(retry_s, remaining))
                retry_s *= 2
        except BaseException:
            net.release_port("tcp", *local)
            raise

    # -- datagrams and names -----------------------------------------------------------------------------
    async def create_datagram_endpoint(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], _ProtocolT],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        *,
        sock: socket.socket | None = None,
        **_socket_options: Any,  # family, proto, flags, reuse_port, allow_broadcast
    ) -> tuple[asyncio.DatagramTransport, _ProtocolT]:
        if sock is not None:
            raise NotImplementedError("SimLoop cannot use a real datagram socket")
        net = self.network
        host = net.add_host(net.resolve(None if local_addr is None else local_addr[0]))
        if not net.is_up(host):
            raise OSError(errno.EADDRNOTAVAIL, f"simulated host {host} is down")
        port = net.bind_port("udp", host, 0 if local_addr is None else int(local_addr[1]))
        remote = None if remote_addr is None else (net.resolve(remote_addr[0]), int(remote_addr[1]))
        transport = SimDatagramTransport(net, (host, port), remote, contextvars.copy_context())
        net.bind_datagram(transport)
        protocol = protocol_factory()
        transport.start(protocol)  # type: ignore[arg-type]  # a datagram factory makes DatagramProtocols
        return transport, protocol

    async def getaddrinfo(  # type: ignore[override]
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int]]]:
        name = host.decode() if isinstance(host, bytes) else host
        try:
            ip = self.network.resolve(name)
        except OSError:
            raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {name!r}") from None
        port_number = int(port) if port not in (None, b"", "") else 0
        address_family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        if family not in (0, address_family):
            raise socket.gaierror(socket.EAI_FAMILY, f"{ip} is not in address family {family}")
        kinds = [socket.SocketKind(type)] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
        return [(address_family, kind, proto, "", (ip, port_number)) for kind in kinds]

    def close(self) -> None:
        for sock in list(self._handshaken):
            sock.close()
        self._handshaken.clear()
        super().close()


def network() -> InMemoryNetwork:
    """The network of the running `SimLoop` (for code and fixtures that did not receive it)."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, SimLoop):
        raise RuntimeError(f"not running on a SimLoop but on {type(loop).__name__}")
    return loop.network


def loop_factory(
    *, seed: int, options: FaultOptions | None = None, start_time_s: float = START_TIME_S
) -> Callable[[], SimLoop]:
    """A zero-argument factory for `asyncio.Runner(loop_factory=...)` or pytest-asyncio's
    `pytest_asyncio_loop_factories` hook; each loop gets a fresh network seeded with `seed`."""

    def make() -> SimLoop:
        return SimLoop(InMemoryNetwork(random.Random(seed), options), start_time_s=start_time_s)

    return make


def run(
    main: Callable[[InMemoryNetwork], Awaitable[T]],
    *,
    seed: int,
    options: FaultOptions | None = None,
    start_time_s: float = START_TIME_S,
) -> T:
    """Run `main(network)` to completion on a fresh `SimLoop`, like `asyncio.run`, and return its result.

    Leftover tasks are cancelled and the loop is closed afterwards. Any exception that escapes carries a
    note with the seed, so a failing run can be replayed.
    """
    net = InMemoryNetwork(random.Random(seed), options)

    async def main_on_network() -> T:
        return await main(net)

    try:
        with asyncio.Runner(loop_factory=lambda: SimLoop(net, start_time_s=start_time_s)) as runner:
            return runner.run(main_on_network())
    except BaseException as exc:
        exc.add_note(f"p2pfaas.sim: replay with seed={seed}")
        raise

"""The in-memory network: hosts, bound endpoints, partitions, crashes, and a trace of every delivery.

`InMemoryNetwork` holds the state that `SimLoop` consults when code opens endpoints: which hosts exist and
are up, which (host, port) pairs listen, which links are cut. Hosts are IP-literal strings ("10.0.0.7") and
never correspond to real interfaces. Code runs "on" a host through a context variable: `with
net.on_host(ip): asyncio.create_task(...)` (tasks copy the context when created), so wildcard binds
("0.0.0.0", "127.0.0.1") and outgoing connections take that host's address.

All randomness (jitter, loss, the default latency map) comes from the `random.Random` passed in; two runs of
the same code with the same seed deliver the same messages at the same virtual times, which
`trace_digest()` lets a test check.

It does not: route (every host reaches every other host directly), model NAT or firewalls, or run code on a
crashed host's behalf. Crashing a host cuts its endpoints, but the tasks that ran there keep running until
whoever started them cancels them (a node harness should).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import errno
import hashlib
import ipaddress
import random
from collections.abc import Iterable, Iterator

from p2pfaas.sim.datagram import SimDatagramTransport
from p2pfaas.sim.fabric import Address, Bound, Listening, Parked
from p2pfaas.sim.faults import FaultOptions, SyntheticLatency
from p2pfaas.sim.server import SimServer
from p2pfaas.sim.stream import Pipe, SimStreamTransport

__all__ = ["DEFAULT_HOST", "InMemoryNetwork", "NetStats", "current_host"]

# The host that code runs on when no `on_host()` block says otherwise (e.g. a test's main coroutine).
DEFAULT_HOST = "10.255.255.254"
_WILDCARD_HOSTS = frozenset({None, "", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"})
_EPHEMERAL_PORTS = range(32768, 61000)  # Linux's default ip_local_port_range

_current_host: contextvars.ContextVar[str] = contextvars.ContextVar("p2pfaas_sim_host", default=DEFAULT_HOST)


def current_host() -> str:
    """The simulated host the calling code runs on."""
    return _current_host.get()


@dataclasses.dataclass
class NetStats:
    """Counters the network keeps; read them, do not write them."""

    datagrams_sent: int = 0
    datagrams_delivered: int = 0
    datagrams_lost: int = 0  # dropped by `datagram_loss`
    datagrams_dropped: int = 0  # partition, down or unknown host, or no endpoint bound at the destination
    stream_connects: int = 0
    stream_refused: int = 0
    stream_segments: int = 0
    stream_bytes: int = 0


class InMemoryNetwork:
    """Simulated hosts and links. Driven by a `SimLoop` (attached on construction) and by the test or scenario
    that registers hosts and injects faults."""

    def __init__(self, rng: random.Random, options: FaultOptions | None = None) -> None:
        self.rng = rng
        self.options = options if options is not None else FaultOptions()
        self.stats = NetStats()
        # Drawn even when `options.latency` is set, so the rest of the random stream does not depend on it.
        self.default_latency = SyntheticLatency(seed=rng.getrandbits(64))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up: dict[str, bool] = {}
        self._names: dict[str, str] = {}
        self._next_host_index = 1
        self._blocked: set[tuple[str, str]] = set()
        for a, b in self.options.blocked_links:
            self._blocked.update({(a, b), (b, a)})
        self._listeners: dict[Address, SimServer] = {}
        self._datagram_endpoints: dict[Address, SimDatagramTransport] = {}
        self._streams: dict[str, set[SimStreamTransport]] = {}
        self._ports: dict[tuple[str, str], set[int]] = {}  # (protocol, host) -> ports in use
        self._next_port: dict[tuple[str, str], int] = {}
        self._parked: list[Parked] = []
        self._trace = hashlib.sha256()
        self.trace_events = 0
        # Datagram deliveries are scheduled in an empty context and then enter the receiver's; the sender's
        # context could already be running when a host sends to itself, and contexts cannot be re-entered.
        self._delivery_context = contextvars.Context()

    # -- wiring ------------------------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("this network is not attached to a SimLoop yet")
        return self._loop

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None and self._loop is not loop and not self._loop.is_closed():
            raise RuntimeError("an InMemoryNetwork serves one loop at a time")
        self._loop = loop

    # -- hosts -------------------------------------------------------------------------------------------
    def add_host(self, ip: str | None = None, *, name: str | None = None) -> str:
        """Register a host (a fresh 10.x.y.z address when `ip` is None) and optionally a DNS name for it."""
        if ip is None:
            while True:
                index = self._next_host_index
                self._next_host_index += 1
                ip = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
                if ip not in self._up and ip != DEFAULT_HOST:
                    break
        else:
            ipaddress.ip_address(ip)  # raises ValueError: hosts are IP literals
        self._up.setdefault(ip, True)
        if name is not None:
            self._names[name] = ip
        return ip

    @property
    def hosts(self) -> list[str]:
        return list(self._up)

    @contextlib.contextmanager
    def on_host(self, ip: str) -> Iterator[str]:
        """Run the block (and tasks created in it) as host `ip`, registering it if new."""
        self.add_host(ip)
        token = _current_host.set(ip)
        try:
            yield ip
        finally:
            _current_host.reset(token)

    def resolve(self, host: str | None) -> str:
        """Map a bind/connect host to a simulated IP: wildcards and loopback mean the current host."""
        if host in _WILDCARD_HOSTS:
            return self.add_host(current_host())
        assert host is not None
        if host in self._names:
            return self._names[host]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise OSError(errno.ENOENT, f"simulated network has no host named {host!r}") from None
        return host

    def is_up(self, host: str) -> bool:
        return self._up.get(host, False)

    def crash(self, host: str) -> None:
        """Take `host` down: its servers stop listening, its streams are reset, its datagram endpoints close.

        Peers see `ConnectionResetError` one latency later; the host's own protocols see
        `ConnectionAbortedError`. Connects to it time out and datagrams to it vanish until `restart()`.
        """
        self._up[host] = False
        for server in [s for (h, _), s in self._listeners.items() if h == host]:
            server.close()
        for endpoint in [e for (h, _), e in self._datagram_endpoints.items() if h == host]:
            endpoint.crash()
        for stream in list(self._streams.get(host, ())):
            stream.crash()

    def restart(self, host: str) -> None:
        """Bring a crashed host back up, with nothing listening: code must bind its endpoints again."""
        self.add_host(host)
        self._up[host] = True

    # -- partitions --------------------------------------------------------------------------------------
    def partition(self, side_a: Iterable[str], side_b: Iterable[str] | None = None) -> None:
        """Cut every link between `side_a` and `side_b` (default: all other hosts registered now)."""
        a = set(side_a)
        b = set(side_b) if side_b is not None else set(self._up) - a
        for x in a:
            for y in b:
                if x != y:
                    self._blocked.update({(x, y), (y, x)})

    def heal(self, side_a: Iterable[str] | None = None, side_b: Iterable[str] | None = None) -> None:
        """Restore links between the two sides (default: all links); held stream segments resume."""
        if side_a is None:
            self._blocked.clear()
        else:
            a = set(side_a)
            b = set(side_b) if side_b is not None else set(self._up) - a
            self._blocked -= {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
        parked, self._parked = self._parked, []
        for pipe in parked:
            if self.is_blocked(pipe.src[0], pipe.dst[0]):
                self._parked.append(pipe)
            else:
                pipe.unpark()

    def is_blocked(self, src_host: str, dst_host: str) -> bool:
        return (src_host, dst_host) in self._blocked

    def can_reach(self, src_host: str, dst_host: str) -> bool:
        return self.is_up(src_host) and self.is_up(dst_host) and not self.is_blocked(src_host, dst_host)

    def park(self, pipe: Parked) -> None:
        self._parked.append(pipe)

    # -- delays and the trace ----------------------------------------------------------------------------
    def delay_s(self, src_host: str, dst_host: str) -> float:
        """One-way delay of one packet: latency model plus jitter (draws from `rng` only if jitter > 0)."""
        latency = self.options.latency or self.default_latency
        delay = latency(src_host, dst_host)
        if self.options.jitter_s > 0:
            delay += self.rng.uniform(0.0, self.options.jitter_s)
        return delay

    def record(self, kind: str, src: Address, dst: Address, size: int) -> None:
        """Add a delivery to the trace (time, kind, endpoints, size; not the bytes, which may hold nonces)."""
        if kind == "tcp-data":
            self.stats.stream_segments += 1
            self.stats.stream_bytes += size
        self.trace_events += 1
        line = f"{self.loop.time():.9f} {kind} {src[0]}:{src[1]} {dst[0]}:{dst[1]} {size}\n"
        self._trace.update(line.encode())

    def trace_digest(self) -> str:
        """SHA-256 over every delivery so far: equal digests mean identical delivery schedules."""
        return self._trace.hexdigest()

    # -- ports -------------------------------------------------------------------------------------------
    def bind_port(self, protocol: str, host: str, port: int) -> int:
        """Reserve `port` (or a free ephemeral one when 0) on `host`; EADDRINUSE if taken."""
        key = (protocol, host)
        used = self._ports.setdefault(key, set())
        if port == 0:
            start = self._next_port.get(key, _EPHEMERAL_PORTS.start)
            for offset in range(len(_EPHEMERAL_PORTS)):
                candidate = _EPHEMERAL_PORTS.start + (start - _EPHEMERAL_PORTS.start + offset) % len(
                    _EPHEMERAL_PORTS
                )
                if candidate not in used:
                    port = candidate
                    self._next_port[key] = candidate + 1
                    break
            else:
                raise OSError(errno.EADDRNOTAVAIL, f"no free ephemeral {protocol} port on {host}")
        elif port in used:
            raise OSError(errno.EADDRINUSE, f"address already in use: {host}:{port}/{protocol}")
        used.add(port)
        return port

    def release_port(self, protocol: str, host: str, port: int) -> None:
        self._ports.get((protocol, host), set()).discard(port)

    # -- stream endpoints --------------------------------------------------------------------------------
    def add_server(self, server: SimServer) -> None:
        """Register a server on its (reserved) addresses; it accepts connections while `is_serving()`."""
        for address in server.addresses:
            self._listeners[address] = server

    def unlisten(self, server: Listening) -> None:
        for address in server.addresses:
            if self._listeners.get(address) is server:
                del self._listeners[address]
            self.release_port("tcp", *address)

    def listener(self, address: Address) -> SimServer | None:
        server = self._listeners.get(address)
        return server if server is not None and server.is_serving() else None

    def open_stream(self, client: Address, server: SimServer, server_address: Address) -> SimStreamTransport:
        """Wire a connection between `client` and `server` and return the client's end.

        The server's end is accepted in the server's context on the next loop iteration, before any byte
        can arrive (bytes need at least one latency).
        """
        to_server, to_client = Pipe(self, client, server_address), Pipe(self, server_address, client)
        client_end = SimStreamTransport(self, client, server_address, to_server, contextvars.copy_context())
        server_end = SimStreamTransport(self, server_address, client, to_client, server.context)
        to_server.receiver, to_client.receiver = server_end, client_end
        for end in (client_end, server_end):
            self._streams.setdefault(end.local[0], set()).add(end)
        # Only the client's port is ephemeral; the server's port belongs to its listener.
        client_end.on_lost = self._client_stream_lost
        server_end.on_lost = self._stream_lost
        self.stats.stream_connects += 1
        self.loop.call_soon(server.accept, server_end, context=server.context)
        return client_end

    def _stream_lost(self, transport: SimStreamTransport) -> None:
        self._streams.get(transport.local[0], set()).discard(transport)

    def _client_stream_lost(self, transport: SimStreamTransport) -> None:
        self._stream_lost(transport)
        self.release_port("tcp", *transport.local)

    # -- datagram endpoints ------------------------------------------------------------------------------
    def bind_datagram(self, endpoint: SimDatagramTransport) -> None:
        self._datagram_endpoints[endpoint.local] = endpoint

    def unbind_datagram(self, endpoint: Bound) -> None:
        if self._datagram_endpoints.get(endpoint.local) is endpoint:
            del self._datagram_endpoints[endpoint.local]
            self.release_port("udp", *endpoint.local)

    def send_datagram(self, src: Address, dst: Address, data: bytes) -> None:
        self.stats.datagrams_sent += 1
        if not self.can_reach(src[0], dst[0]):
            self.stats.datagrams_dropped += 1
            return
        if self.options.datagram_loss > 0 and self.rng.random() < self.options.datagram_loss:
            self.stats.datagrams_lost += 1
            return
        delay = self.delay_s(src[0], dst[0])
        self.loop.call_later(delay, self._deliver_datagram, src, dst, data, context=self._delivery_context)

    def _deliver_datagram(self, src: Address, dst: Address, data: bytes) -> None:
        endpoint = self._datagram_endpoints.get(dst)
        if endpoint is None or not self.is_up(dst[0]):
            self.stats.datagrams_dropped += 1
            return
        self.stats.datagrams_delivered += 1
        self.record("udp", src, dst, len(data))
        endpoint.context.run(endpoint.deliver, data, src)

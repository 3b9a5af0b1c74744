"""`Fabric` (`p2pfaas.sim.fabric`): the network is one, and an endpoint needs nothing of a network
beyond this shape, so a test's own fabric can carry a real `SimDatagramTransport`."""

from __future__ import annotations

import asyncio
import contextvars
import random

from p2pfaas.sim.datagram import SimDatagramTransport
from p2pfaas.sim.fabric import Address, Bound, Fabric, Listening, Parked
from p2pfaas.sim.faults import FaultOptions
from p2pfaas.sim.net import InMemoryNetwork


class Recording:
    """A fabric of the test's own: every link up, no delay, datagrams written down instead of sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.sent: list[tuple[Address, Address, bytes]] = []
        self.unbound: list[Bound] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def options(self) -> FaultOptions:
        return FaultOptions(max_datagram_bytes=8)

    def is_up(self, host: str) -> bool:
        return True

    def is_blocked(self, src_host: str, dst_host: str) -> bool:
        return False

    def park(self, pipe: Parked) -> None:
        raise AssertionError("nothing is parked when no link is cut")

    def delay_s(self, src_host: str, dst_host: str) -> float:
        return 0.0

    def record(self, kind: str, src: Address, dst: Address, size: int) -> None:
        pass

    def unlisten(self, server: Listening) -> None:
        pass

    def send_datagram(self, src: Address, dst: Address, data: bytes) -> None:
        self.sent.append((src, dst, data))

    def unbind_datagram(self, endpoint: Bound) -> None:
        self.unbound.append(endpoint)


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, Address]] = []
        self.errors: list[OSError] = []
        self.closed = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.append((data, addr))

    def error_received(self, exc: Exception) -> None:
        assert isinstance(exc, OSError)
        self.errors.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(exc)


async def test_an_endpoint_runs_on_any_fabric_and_the_network_is_one() -> None:
    fabric = Recording(asyncio.get_running_loop())
    as_fabric: Fabric = fabric
    network: Fabric = InMemoryNetwork(random.Random(0))  # the one implementation has the shape too
    assert network.options == FaultOptions()
    local, peer = ("10.0.0.1", 4000), ("10.0.0.2", 5000)
    endpoint = SimDatagramTransport(as_fabric, local, peer, contextvars.copy_context())
    sink = Sink()
    endpoint.start(sink)
    endpoint.sendto(b"hello")
    endpoint.sendto(b"far too long")  # over this fabric's max_datagram_bytes
    endpoint.deliver(b"from the peer", peer)
    endpoint.deliver(b"from a stranger", ("10.0.0.3", 1))  # a connected endpoint hears its peer only
    await asyncio.sleep(0)
    assert fabric.sent == [(local, peer, b"hello")]
    assert sink.received == [(b"from the peer", peer)]
    assert [e.strerror for e in sink.errors] == ["Message too long"]
    endpoint.close()
    assert await sink.closed is None and fabric.unbound == [endpoint]

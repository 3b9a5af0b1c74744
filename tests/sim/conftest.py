"""The kit of the simulator's network tests: hosts, a flat latency, and a protocol that records what it
is told."""

from __future__ import annotations

import asyncio

from p2pfaas import sim

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
ONE_WAY_S = 0.010


FLAT = sim.FaultOptions(latency=sim.ConstantLatency(ONE_WAY_S))


class Recorder(asyncio.Protocol):
    """Keeps everything a stream protocol is told."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.eof = False
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return True  # keep the half-open connection, so tests can see EOF and closing separately

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def listen(net: sim.InMemoryNetwork, host: str, port: int) -> tuple[asyncio.Server, list[Recorder]]:
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder())
        return accepted[-1]

    with net.on_host(host):
        server = await asyncio.get_running_loop().create_server(factory, host, port)
    return server, accepted


async def connect(net: sim.InMemoryNetwork, src: str, dst: str, port: int) -> Recorder:
    with net.on_host(src):
        _, protocol = await asyncio.get_running_loop().create_connection(Recorder, dst, port)
    return protocol

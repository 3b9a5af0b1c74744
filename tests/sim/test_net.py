"""InMemoryNetwork through SimLoop with raw asyncio protocols: streams, datagrams, faults, determinism."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_stream_round_trip_takes_a_handshake_and_a_latency() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        loop = asyncio.get_running_loop()
        server, accepted = await listen(net, B, 9000)
        start = loop.time()
        client = await connect(net, A, B, 9000)
        assert loop.time() - start == pytest.approx(2 * ONE_WAY_S)
        assert client.transport is not None
        assert client.transport.get_extra_info("peername") == (B, 9000)
        assert client.transport.get_extra_info("socket") is None
        client.transport.write(b"hello ")
        client.transport.writelines([b"wor", b"ld"])
        client.transport.write_eof()
        await asyncio.sleep(ONE_WAY_S * 1.5)
        (peer,) = accepted
        assert bytes(peer.data) == b"hello world" and peer.eof
        assert peer.transport is not None and peer.transport.get_extra_info("peername")[0] == A
        peer.transport.close()
        await asyncio.sleep(ONE_WAY_S * 1.5)
        assert client.eof and not client.lost.done()  # the client keeps its half-open connection
        client.transport.close()
        assert await client.lost is None
        assert await peer.lost is None
        server.close()
        await server.wait_closed()

    sim.run(main, seed=1, options=FLAT)


def test_connect_to_a_closed_port_is_refused_after_one_round_trip() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        loop = asyncio.get_running_loop()
        net.add_host(B)
        start = loop.time()
        with pytest.raises(ConnectionRefusedError):
            await connect(net, A, B, 9000)
        assert loop.time() - start == pytest.approx(2 * ONE_WAY_S)
        assert net.stats.stream_refused == 1

    sim.run(main, seed=1, options=FLAT)


def test_partition_makes_connect_time_out_and_heal_lets_it_through() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        loop = asyncio.get_running_loop()
        server, _ = await listen(net, B, 9000)
        net.partition([A], [B])
        start = loop.time()
        with pytest.raises(TimeoutError):
            await connect(net, A, B, 9000)
        assert loop.time() - start == pytest.approx(FLAT.connect_timeout_s, abs=1.0)
        # A connect in progress succeeds once the partition heals (a retried SYN gets through).
        pending = asyncio.create_task(connect(net, A, B, 9000))
        await asyncio.sleep(10)
        net.heal()
        client = await pending
        assert client.transport is not None
        client.transport.close()
        server.close()

    sim.run(main, seed=1, options=FLAT)


def test_established_stream_holds_data_across_a_partition_in_order() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        server, accepted = await listen(net, B, 9000)
        client = await connect(net, A, B, 9000)
        assert client.transport is not None
        net.partition([A], [B])
        for i in range(100):
            client.transport.write(b"%d," % i)
        await asyncio.sleep(30)
        (peer,) = accepted
        assert peer.data == b""
        net.heal()
        await asyncio.sleep(1)
        assert bytes(peer.data) == b"".join(b"%d," % i for i in range(100))
        client.transport.abort()
        assert isinstance(await peer.lost, ConnectionResetError)
        server.close()

    sim.run(main, seed=1, options=FLAT)


def test_crash_resets_peers_and_the_host_becomes_unreachable() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        server, accepted = await listen(net, B, 9000)
        client = await connect(net, A, B, 9000)
        await asyncio.sleep(1)
        net.crash(B)
        assert isinstance(await client.lost, ConnectionResetError)
        assert isinstance(await accepted[0].lost, ConnectionAbortedError)
        assert not server.is_serving()
        with pytest.raises(TimeoutError):
            await connect(net, A, B, 9000)
        net.restart(B)
        with pytest.raises(ConnectionRefusedError):  # up again, but nothing listens until code rebinds
            await connect(net, A, B, 9000)

    sim.run(main, seed=1, options=FLAT)


def test_pause_reading_buffers_until_resume() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        server, accepted = await listen(net, B, 9000)
        client = await connect(net, A, B, 9000)
        await asyncio.sleep(0)
        peer = accepted[0]
        assert peer.transport is not None and client.transport is not None
        peer.transport.pause_reading()
        client.transport.write(b"abc")
        await asyncio.sleep(1)
        assert peer.data == b""
        peer.transport.resume_reading()
        await asyncio.sleep(0)
        assert peer.data == b"abc"
        client.transport.close()
        peer.transport.close()
        server.close()

    sim.run(main, seed=1, options=FLAT)


def test_ports_zero_and_in_use() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        first, _ = await listen(net, A, 0)
        port = first.sockets[0].getsockname()[1]
        assert port >= 32768
        with pytest.raises(OSError, match="in use"):
            await listen(net, A, port)
        first.close()
        again, _ = await listen(net, A, port)  # released on close
        again.close()

    sim.run(main, seed=1)


@settings(max_examples=25, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=40),
    jitter_s=st.floats(min_value=0, max_value=0.2),
    seed=st.integers(0, 2**32),
)
def test_stream_keeps_byte_order_under_jitter(chunks: list[bytes], jitter_s: float, seed: int) -> None:
    async def main(net: sim.InMemoryNetwork) -> bytes:
        server, accepted = await listen(net, B, 9000)
        client = await connect(net, A, B, 9000)
        assert client.transport is not None
        for chunk in chunks:
            client.transport.write(chunk)
            await asyncio.sleep(net.rng.choice([0, 0.001, 0.05]))
        client.transport.close()
        await asyncio.sleep(1)
        server.close()
        return bytes(accepted[0].data)

    assert sim.run(main, seed=seed, options=sim.FaultOptions(jitter_s=jitter_s)) == b"".join(chunks)


class DatagramSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))


def send_datagrams(loss: float, count: int, seed: int) -> tuple[int, sim.NetStats]:
    async def main(net: sim.InMemoryNetwork) -> int:
        loop = asyncio.get_running_loop()
        with net.on_host(B):
            sink_transport, sink = await loop.create_datagram_endpoint(
                DatagramSink, local_addr=("0.0.0.0", 7)
            )
        with net.on_host(A):
            sender, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(B, 7))
        for i in range(count):
            sender.sendto(i.to_bytes(4, "big"))
        await asyncio.sleep(1)
        assert all(addr == sender.get_extra_info("sockname") for _, addr in sink.received)
        sender.close()
        sink_transport.close()
        return len(sink.received)

    options = sim.FaultOptions(datagram_loss=loss, latency=sim.ConstantLatency(ONE_WAY_S))
    net_stats: list[sim.NetStats] = []

    async def wrapped(net: sim.InMemoryNetwork) -> int:
        net_stats.append(net.stats)
        return await main(net)

    return sim.run(wrapped, seed=seed, options=options), net_stats[0]


@settings(max_examples=15, deadline=None)
@given(loss=st.floats(min_value=0, max_value=1), seed=st.integers(0, 2**32))
def test_datagram_loss_matches_its_probability(loss: float, seed: int) -> None:
    count = 2000
    delivered, stats = send_datagrams(loss, count, seed)
    assert stats.datagrams_sent == count
    assert stats.datagrams_lost + delivered == count
    sigma = math.sqrt(count * loss * (1 - loss))
    assert abs((count - delivered) - loss * count) <= 5 * sigma + 1


def test_datagrams_across_a_partition_or_to_a_down_host_vanish() -> None:
    async def main(net: sim.InMemoryNetwork) -> sim.NetStats:
        loop = asyncio.get_running_loop()
        with net.on_host(B):
            sink_transport, sink = await loop.create_datagram_endpoint(DatagramSink, local_addr=(B, 7))
        with net.on_host(A):
            sender, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol)
        net.partition([A], [B])
        sender.sendto(b"cut", (B, 7))
        net.heal()
        sender.sendto(b"ok", (B, 7))
        sender.sendto(b"nobody", (B, 8))
        await asyncio.sleep(1)
        assert [data for data, _ in sink.received] == [b"ok"]
        net.crash(B)
        sender.sendto(b"down", (B, 7))
        await asyncio.sleep(1)
        assert sink_transport.is_closing()
        sender.close()
        return net.stats

    stats = sim.run(main, seed=1)
    assert (stats.datagrams_sent, stats.datagrams_delivered, stats.datagrams_dropped) == (4, 1, 3)


def test_a_failing_run_names_its_seed() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom") as info:
        sim.run(main, seed=4242)
    assert "seed=4242" in "".join(info.value.__notes__)


def test_names_resolve_and_unknown_names_fail() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        loop = asyncio.get_running_loop()
        net.add_host(C, name="anchor.sim")
        infos = await loop.getaddrinfo("anchor.sim", 80, type=1)
        assert [info[4] for info in infos] == [(C, 80)]
        with pytest.raises(OSError):
            await loop.getaddrinfo("nowhere.example", 80)

    sim.run(main, seed=1)

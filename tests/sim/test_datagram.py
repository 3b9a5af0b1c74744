"""Simulated UDP (`p2pfaas.sim.datagram`): loss at its probability, and nothing across a partition or
to a down host."""

from __future__ import annotations

import asyncio
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas import sim
from tests.sim.conftest import ONE_WAY_S, A, B


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

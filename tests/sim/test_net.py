"""InMemoryNetwork (`p2pfaas.sim.net`) through SimLoop with raw protocols: refusals, partitions, crashes."""

from __future__ import annotations

import asyncio

import pytest

from p2pfaas import sim
from tests.sim.conftest import FLAT, ONE_WAY_S, A, B, connect, listen


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

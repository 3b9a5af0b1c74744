"""In-memory stream connections (`p2pfaas.sim.stream`): a handshake and a latency, byte order kept
under jitter and across a partition, reading paused and resumed."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas import sim
from tests.sim.conftest import FLAT, ONE_WAY_S, A, B, connect, listen


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

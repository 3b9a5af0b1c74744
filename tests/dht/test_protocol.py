"""The datagram protocol on the in-memory network: its codec, retries and unresponsive addresses."""

from __future__ import annotations

import dataclasses

from kademlia.node import Node


def test_datagrams_use_the_c_msgpack_not_the_pure_python_one_of_rpcudp() -> None:
    import msgpack
    import rpcudp.protocol

    assert msgpack.Packer.__module__ == "msgpack._cmsgpack"  # our codec's packer (defect 10)
    assert rpcudp.protocol.umsgpack.__file__.endswith(".py")  # the stock RPC layer's


def test_a_lost_datagram_is_retried_instead_of_evicting_the_peer() -> None:
    import asyncio

    from p2pfaas import sim
    from tests.dht.netkit import start_network, stop_all

    async def main(net: sim.InMemoryNetwork) -> tuple[int, int, int]:
        a, b = await start_network(net, 2, seed=9)
        net.options = dataclasses.replace(net.options, datagram_loss=0.3)
        answered = 0
        for _ in range(20):
            answered += await a.proto.call_ping(Node(b.node.id, *b.address)) is not None
            await asyncio.sleep(1)
        stats = a.proto.stats
        stop_all([a, b])
        return answered, stats.retries, len(a.proto.router.contacts())

    answered, retries, contacts = sim.run(main, seed=9)
    assert retries > 0 and answered >= 14  # each attempt gets through with p = 0.49, a call with 0.87
    assert contacts == 1  # never evicted for a lost datagram or two


def test_an_address_that_let_every_attempt_time_out_is_skipped_for_unresponsive_s() -> None:
    import asyncio

    from p2pfaas import sim
    from tests.dht.netkit import start_network, stop_all

    async def main(net: sim.InMemoryNetwork) -> list[bool]:
        (a,) = await start_network(net, 1, seed=4)
        dead = ("10.99.0.1", 4000)  # nobody listens there
        seen = [a.proto.is_unresponsive(dead)]
        assert await a.proto.call_ping(Node(b"\x07" * 20, *dead)) is None
        seen.append(a.proto.is_unresponsive(dead))
        await asyncio.sleep(a.proto.config.unresponsive_s - 1.0)
        seen.append(a.proto.is_unresponsive(dead))
        await asyncio.sleep(1.0)
        seen.append(a.proto.is_unresponsive(dead))  # on the loop's clock, not the wall's
        stop_all([a])
        return seen

    assert sim.run(main, seed=4) == [False, True, True, False]

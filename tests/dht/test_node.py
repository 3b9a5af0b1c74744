"""DhtNode on the in-memory network: publish/get, expiry, republishing, refresh, and the stock defects."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import pytest
from kademlia.network import Server
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.storage import ForgetfulStorage

from p2pfaas import codec, sim
from p2pfaas.dht import wire
from p2pfaas.dht.node import DhtConfig, DhtNode
from p2pfaas.dht.records import make_record, provider_key
from p2pfaas.identity import KeyPair
from tests.dht.netkit import host_ip, start_network, start_node, stop_all

KEY = provider_key(b"\x07" * 32)
SHORT = DhtConfig(tick_s=10.0, refresh_interval_s=60.0, record_ttl_s=120.0, republish_interval_s=40.0)


def test_publishers_share_a_key_and_every_reader_sees_them_all() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        nodes = await start_network(net, 30, seed=1)
        for node in nodes[:4]:
            assert await node.publish(KEY, host=node.address[0], port=8000) >= 10
        for reader in nodes[10:]:
            found = await reader.get(KEY)
            assert {r.signer for r in found} == {n.keys.public.raw for n in nodes[:4]}
        # A publisher's newer record supersedes its older one everywhere it is read.
        await nodes[0].publish(KEY, host="10.9.9.9", port=8001)
        found = await nodes[20].get(KEY)
        assert {r.host for r in found if r.signer == nodes[0].keys.public.raw} == {"10.9.9.9"}
        stop_all(nodes)

    sim.run(main, seed=1)


def test_only_the_publisher_keeps_a_record_alive() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        nodes = await start_network(net, 20, seed=2, config=SHORT)
        staying, leaving = nodes[1], nodes[2]
        await staying.publish(KEY, host="10.1.1.1", port=8000)
        await leaving.publish(KEY, host="10.2.2.2", port=8000)
        leaving.stop()
        net.crash(leaving.address[0])
        await asyncio.sleep(3 * SHORT.record_ttl_s)  # several republish rounds of the one that stayed
        found = await nodes[10].get(KEY)
        assert [r.host for r in found] == ["10.1.1.1"]  # the departed publisher's record died
        assert max(r.seq for r in found) > staying.own[KEY].record.seq - 1
        staying.withdraw(KEY)
        await asyncio.sleep(2 * SHORT.record_ttl_s)
        assert await nodes[10].get(KEY) == []
        assert sum(len(n.storage) for n in nodes if n is not leaving) == 0  # holders dropped them
        stop_all(nodes)

    sim.run(main, seed=2)


def test_storing_with_nobody_reachable_returns_false_where_the_stock_server_crashes() -> None:
    record = make_record(KeyPair.from_seed(b"p"), key=KEY, seq=1, expires_at=4e9, host="10.0.0.1", port=1)

    async def ours(net: sim.InMemoryNetwork) -> bool:
        node = await start_node(net, host_ip(0), seed="alone", seeds=[])
        node.proto.router.add_contact(Node(bytes(20), "10.200.0.1", 4000))  # nobody there
        ok = await node.set_digest(KEY, record)
        node.stop()
        return ok

    assert sim.run(ours, seed=3) is False

    async def stock(net: sim.InMemoryNetwork) -> None:
        server = Server()
        await server.listen(4000, "10.0.0.1")
        server.protocol.router.add_contact(Node(bytes(20), "10.200.0.1", 4000))
        try:
            await server.set_digest(KEY, b"v")
        finally:
            server.stop()

    with pytest.raises(ValueError, match="empty"):  # max([]) in set_digest (defect 3)
        sim.run(stock, seed=3)


def test_the_refresh_interval_is_honoured_every_time_unlike_the_stock_server() -> None:
    async def main(net: sim.InMemoryNetwork) -> tuple[int, float]:
        # Four quiet peers (no refreshes of their own), and one node that asks for a 60 s interval.
        quiet = dataclasses.replace(SHORT, refresh_interval_s=1e9)
        nodes = await start_network(net, 4, seed=4, config=quiet)
        me = await start_node(net, host_ip(9), seed="me", seeds=[nodes[0].address], config=SHORT)
        await asyncio.sleep(10 * SHORT.refresh_interval_s)
        refreshes = me.refreshes
        stop_all([*nodes, me])
        server = Server()
        await server.listen(4000, "10.100.0.1")
        server.refresh_loop.cancel()
        server.refresh_table(60)  # asks for a 60 s interval
        loop = asyncio.get_running_loop()
        first = server.refresh_loop.when() - loop.time()
        await asyncio.sleep(61)
        second = server.refresh_loop.when() - loop.time()
        server.stop()
        assert first == pytest.approx(60)
        return refreshes, second

    refreshes, stock_next_s = sim.run(main, seed=4)
    assert refreshes >= 8  # one idle-bucket refresh per 60 s interval over 600 s
    assert stock_next_s > 3000  # the stock server falls back to 3600 s after the first round (defect 5)


class _RecordingStock(KademliaProtocol):  # type: ignore[misc]
    """The stock protocol, noting to whom `welcome_if_new` hands keys instead of sending them."""

    stored_to: list[bytes]

    async def call_store(self, node: Node, key: bytes, value: Any) -> None:
        self.stored_to.append(node.id)


def test_a_new_closest_node_receives_the_records_it_should_hold() -> None:
    newcomer_keys = KeyPair.from_seed(b"newcomer")
    key = newcomer_keys.node_id[:-1] + bytes([newcomer_keys.node_id[-1] ^ 1])  # next to the newcomer

    async def ours(net: sim.InMemoryNetwork) -> int:
        nodes = await start_network(net, 10, seed=5)
        await nodes[3].publish(key, host="10.3.3.3", port=8000)
        newcomer = DhtNode(newcomer_keys, rng=random.Random(0))
        net.add_host("10.77.0.1")
        await newcomer.listen(4000, "10.77.0.1")
        await newcomer.bootstrap([nodes[0].address])
        await asyncio.sleep(5)
        held = len(newcomer.storage.get_records(key, asyncio.get_running_loop().wall_time()))  # type: ignore[attr-defined]
        stop_all([*nodes, newcomer])
        return held

    assert sim.run(ours, seed=5) == 1

    async def stock(net: sim.InMemoryNetwork) -> list[bytes]:
        rng = random.Random(6)
        proto = _RecordingStock(Node(rng.randbytes(20)), ForgetfulStorage(), 20)
        proto.stored_to = []
        for i in range(30):
            proto.router.add_contact(Node(rng.randbytes(20), f"10.0.{i}.1", 4000))
        proto.storage[key] = b"v"
        proto.welcome_if_new(Node(newcomer_keys.node_id, "10.77.0.1", 4000))
        await asyncio.sleep(1)
        return proto.stored_to

    assert sim.run(stock, seed=6) == []  # it hashed the key again and looked near the wrong id (defect 2)


def test_forged_replayed_and_flooding_datagrams_are_dropped_and_counted() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        a, b = await start_network(net, 2, seed=7)
        mallory = KeyPair.from_seed(b"mallory")
        loop = asyncio.get_running_loop()
        net.add_host("10.66.0.1")
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("10.66.0.1", 5)
        )
        ping = wire.Ping(b"12345678", False, mallory.public.raw, bytes(64))  # signature that does not verify
        transport.sendto(codec.encode(ping), b.address)
        transport.sendto(b"\x93garbage", b.address)
        await asyncio.sleep(1)
        assert b.proto.stats.dropped_bad_signature == 1 and b.proto.stats.dropped_malformed == 1
        # A reply signed by a different key than the contact's id: counted, and the call times out.
        impostor = Node(mallory.node_id, *b.address)
        assert await a.proto.call_ping(impostor) is None
        assert a.proto.stats.dropped_id_mismatch >= 1
        # A flood from one address block runs out of tokens.
        from p2pfaas import signing

        for i in range(1000):
            msg = signing.sign(wire.Ping(i.to_bytes(8, "big"), True, b"", b""), mallory)
            transport.sendto(codec.encode(msg), b.address)
        await asyncio.sleep(1)
        assert b.proto.stats.dropped_rate >= 500
        transport.close()
        stop_all([a, b])

    sim.run(main, seed=7)

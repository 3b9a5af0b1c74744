"""The hostile node of the simulations: what it answers, and that its made-up contacts do not capture an
honest disjoint lookup (the 200-node scenarios with many of them are in test_sim.py)."""

from __future__ import annotations

import asyncio

from kademlia.node import Node

from p2pfaas import sim
from p2pfaas.dht.adversary import FAKE_PORT, LyingNode, fake_contacts
from p2pfaas.dht.node import DhtConfig
from p2pfaas.dht.records import provider_key
from p2pfaas.dht.routing import subnet_of
from tests.dht.netkit import closest, contact, host_ip, lookup, start_network, start_node, stop_all

CONFIG = DhtConfig(ksize=10, replicas=10, refresh_interval_s=7200.0)
KEY = provider_key(b"\x33" * 32)


def test_fake_contacts_sit_next_to_the_target_on_four_ranges() -> None:
    fake = fake_contacts(KEY, 20)
    assert len({node_id for node_id, _, _ in fake}) == 20
    assert all(node_id[:-1] == KEY[:-1] and node_id != KEY for node_id, _, _ in fake[1:])
    assert len({subnet_of(host).rsplit(".", 2)[0] for _, host, _ in fake}) == 4  # four /16s
    assert {port for _, _, port in fake} == {FAKE_PORT}


def test_a_liar_answers_with_made_up_contacts_hides_its_records_and_drops_stores() -> None:
    async def main(net: sim.InMemoryNetwork) -> tuple[int, list[bytes], list[bytes], int, bool, int]:
        (honest,) = await start_network(net, 1, seed=51, config=CONFIG)
        liar = await start_node(
            net, host_ip(1), seed="liar", seeds=[honest.address], config=CONFIG, factory=LyingNode
        )
        await honest.publish(KEY, host="10.1.1.1", port=8000)  # the liar is asked to hold it too
        found = await honest.proto.call_find_node(contact(liar), Node(KEY))
        values = await honest.proto.call_find_value(contact(liar), Node(KEY))
        assert found is not None and values is not None
        record = honest.own[KEY].record
        accepted = await honest.proto.call_store(contact(liar), KEY, record)
        held = len(liar.storage)
        stop_all([honest, liar])
        return (
            liar.proto.config.ksize,
            [c.node_id for c in found.contacts],
            [c.node_id for c in values.contacts],
            len(values.records),
            accepted,
            held,
        )

    ksize, contacts, value_contacts, records, accepted, held = sim.run(main, seed=51)
    fake_ids = [node_id for node_id, _, _ in fake_contacts(KEY, ksize)]
    assert contacts == fake_ids and value_contacts == fake_ids
    assert records == 0  # it hides the record it was given
    assert accepted and held == 0  # "accepted", and kept nothing


def test_liars_among_the_seeds_do_not_keep_an_honest_disjoint_lookup_from_the_record() -> None:
    """Three of the four seeds lie: their paths end in made-up contacts that never answer, and the path
    through the honest seed still reaches the record's holders."""

    async def main(net: sim.InMemoryNetwork) -> tuple[list[bytes], bytes, bool, int]:
        nodes = await start_network(net, 40, seed=52, config=CONFIG)
        liars = [
            await start_node(
                net,
                host_ip(40 + i),
                seed=f"liar/{i}",
                seeds=[nodes[0].address],
                config=CONFIG,
                factory=LyingNode,
            )
            for i in range(10)
        ]
        await asyncio.sleep(60)
        publisher, me = nodes[5], nodes[9]
        await publisher.publish(KEY, host="10.1.1.1", port=8000)
        seeds = [contact(liars[0]), contact(liars[1]), contact(nodes[20]), contact(liars[2])]
        first = await lookup(me, KEY, seeds, paths=3, want_records=True).run()
        skipped = me.proto.stats.skipped_unresponsive
        await lookup(me, KEY, seeds, paths=3).run()
        honest = closest([n for n in nodes if n is not me], KEY, 1)[0]
        stop_all([*nodes, *liars])
        return (
            [n.id for n in first.nodes],
            honest,
            publisher.node.id in first.records,
            me.proto.stats.skipped_unresponsive - skipped,
        )

    found, closest_honest, has_record, skipped_again = sim.run(main, seed=52)
    fake_ids = {node_id for node_id, _, _ in fake_contacts(KEY, 20)}
    assert not fake_ids & set(found)  # a made-up contact never answers, so it is never a result
    assert closest_honest in found
    assert has_record
    assert skipped_again > 0  # the made-up addresses timed out once and are skipped after that

"""Draining on the simulator: announced, queued work handed over, in-flight work finished, nothing lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from p2pfaas import sim
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair
from p2pfaas.node.drain import drain_node
from tests.placement.harness import placement_net


def test_a_draining_node_hands_its_queue_over_finishes_what_runs_and_stops(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=7, nodes=4, slots=1, mean_run_s=1.0) as pn:
            node = pn.nodes[0]
            burst = [
                asyncio.ensure_future(pn.client.invoke("echo", {"i": i}, node_url=node.url))
                for i in range(10)
            ]
            await asyncio.sleep(0.3)
            queued = len(node.placement.router.slots.waiting)
            assert queued > 0  # there is a local queue to hand over
            drain = asyncio.ensure_future(node.placement.drain(30.0))
            await asyncio.sleep(0.5)
            # Neighbours were told (drain pushes its report to every neighbour at once).
            for peer in pn.nodes[1:]:
                load = peer.placement.view.get(node.node_id)
                assert load is not None and load.draining
            # New work reaching the draining node is placed elsewhere.
            late = await pn.client.invoke("echo", "late", node_url=node.url)
            assert late.value == {"echo": "late"} and late.node_id != node.node_id
            outcomes = await asyncio.gather(*burst)
            assert [o.value for o in outcomes] == [{"echo": {"i": i}} for i in range(10)]
            assert await drain is True
            assert node.placement.router.stats.handed_off == queued
            assert node._stop.is_set()  # the daemon was told to stop once drained
            assert pn.executions() == 11  # nothing lost, nothing run twice
            ran_here = sum(1 for o in outcomes if o.node_id == node.node_id)
            assert ran_here <= 10 - queued

    sim.run(main, seed=7)


def test_only_the_nodes_own_key_can_drain_it(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=8, nodes=2) as pn:
            node = pn.nodes[0]
            with pytest.raises(Refused, match="only this node's own key"):
                await drain_node(node.url, KeyPair.generate(), deadline_s=5.0, wait=False)
            assert not node.placement.router.draining
            assert await drain_node(node.url, node.keys, deadline_s=5.0, wait=False) == "draining"
            await asyncio.sleep(1.0)
            assert node.placement.router.draining and node._stop.is_set()
            # The drained node's work goes elsewhere; the network still serves.
            outcome = await pn.client.invoke("echo", 1, node_url=pn.nodes[1].url)
            assert outcome.node_id == pn.nodes[1].node_id

    sim.run(main, seed=8)


def test_draining_sets_the_flag_in_the_dht_advert_so_discovery_skips_the_node(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=9, nodes=3, dht=True) as pn:
            node, other = pn.nodes[1], pn.nodes[2]
            assert node.overlay is not None and other.overlay is not None
            with net.on_host(other.config.host):
                before = await other.overlay.find_nearby("python3.11", count=8)
            assert node.url in {a.url for a in before}
            assert await node.placement.drain(5.0) is True
            assert node.overlay.capacity().draining
            with net.on_host(other.config.host):
                after = await other.overlay.find_nearby("python3.11", count=8)
            assert node.url not in {a.url for a in after}

    sim.run(main, seed=9)

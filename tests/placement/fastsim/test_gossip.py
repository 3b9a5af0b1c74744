"""Gossip in the fast simulator: an exchange leaves each side with the other's report and the reports
it relays; a round forgets a neighbour that died."""

from __future__ import annotations

import random

from p2pfaas.placement.fastsim.gossip import exchange, gossip_round
from p2pfaas.placement.fastsim.model import Plane, SimConfig

CONFIG = SimConfig(nodes=6, near_neighbours=2, random_neighbours=0, gossip_fanout=2, relay=8, seed=4)


def test_an_exchange_passes_both_reports_and_relays_what_each_side_knew() -> None:
    a, b, c = Plane.build(CONFIG, random.Random(4)).nodes[:3]
    exchange(a, c, now=1.0, relay=8)  # a now holds c's report
    exchange(a, b, now=2.0, relay=8)
    assert b.view.get(a.node_id) is not None and a.view.get(b.node_id) is not None
    relayed = b.view.get(c.node_id)
    assert relayed is not None and relayed.received_at == 1.0


def test_a_round_reaches_live_neighbours_and_forgets_a_dead_one() -> None:
    nodes = Plane.build(CONFIG, random.Random(4)).nodes
    node = nodes[0]
    alive, dead = nodes[node.neighbours[0]], nodes[node.neighbours[1]]
    exchange(node, dead, now=0.5, relay=8)
    dead.alive = False
    gossip_round(node, nodes, CONFIG, random.Random(0), now=1.0)
    assert node.view.get(dead.node_id) is None
    assert node.view.get(alive.node_id) is not None and alive.view.get(node.node_id) is not None

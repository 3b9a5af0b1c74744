"""Push-pull gossip in the fast simulator: a node exchanges reports with `gossip_fanout` random
neighbours, each side relaying the `relay` freshest reports it holds (the real `LoadView` code)."""

from __future__ import annotations

import random

from p2pfaas.placement.fastsim.model import Node, SimConfig


def exchange(a: Node, b: Node, now: float, relay: int) -> None:
    for src, dst in ((a, b), (b, a)):
        dst.view.update(src.node_id, src.report(now))
        for load in src.view.freshest(now, relay):
            dst.view.update(load.node_id, load)


def gossip_round(node: Node, nodes: list[Node], cfg: SimConfig, rng: random.Random, now: float) -> None:
    """One round of `node`'s gossip; a neighbour found dead is forgotten."""
    node.view.expire(now)
    for j in rng.sample(node.neighbours, min(cfg.gossip_fanout, len(node.neighbours))):
        peer = nodes[j]
        if peer.alive:
            exchange(node, peer, now, cfg.relay)
        else:
            node.view.forget(peer.node_id)

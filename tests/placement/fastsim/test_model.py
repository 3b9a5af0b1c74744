"""The fast simulator's plane and nodes: RTTs grow with distance, neighbours are the nearest plus random
contacts, reports say what the node holds, and the oracle picks a free slot nearest first."""

from __future__ import annotations

import random

from p2pfaas.placement.fastsim.model import Job, Plane, SimConfig, oracle_decision
from p2pfaas.placement.policy import Kind

CONFIG = SimConfig(nodes=12, near_neighbours=3, random_neighbours=2, functions=5, seed=3)


def test_the_plane_is_symmetric_nearest_first_and_the_same_for_a_seed() -> None:
    plane = Plane.build(CONFIG, random.Random(3))
    again = Plane.build(CONFIG, random.Random(3))
    assert plane.rtt == again.rtt and [n.neighbours for n in plane.nodes] == [
        n.neighbours for n in again.nodes
    ]
    for a in plane.nodes:
        assert plane.rtt[a.idx][a.idx] == 0.0
        for b in plane.nodes:
            assert plane.rtt[a.idx][b.idx] == plane.rtt[b.idx][a.idx]
            if a is not b:
                assert CONFIG.rtt_min_s <= plane.rtt[a.idx][b.idx] <= CONFIG.rtt_min_s + CONFIG.rtt_span_s
        distances = [plane.rtt[a.idx][j] for j in plane.by_rtt[a.idx]]
        assert distances == sorted(distances) and a.idx not in plane.by_rtt[a.idx]
        assert set(plane.by_rtt[a.idx][:3]) <= set(a.neighbours) and a.idx not in a.neighbours
        assert 3 <= len(a.neighbours) <= 5
    assert plane.fn_cdf[-1] == 1.0 and plane.fn_cdf == sorted(plane.fn_cdf)
    assert plane.capacity_slots == sum(n.capacity for n in plane.nodes)


def test_a_report_counts_free_slots_queue_and_warm_functions_with_a_new_sequence() -> None:
    node = Plane.build(CONFIG, random.Random(1)).nodes[0]
    node.capacity, node.busy = 2, 2
    node.queue.append(Job(id="j", fn="f", born=0.0, measured=False))
    node.warm_until = {"warm": 10.0, "cold": 1.0}
    first, second = node.report(now=5.0), node.report(now=5.0)
    assert (first.free_slots, first.queue_length, first.warm) == (0, 1, {"warm": 1})
    assert second.seq == first.seq + 1 and first.received_at == 5.0


def test_the_oracle_runs_here_when_free_else_at_the_nearest_free_node() -> None:
    plane = Plane.build(CONFIG, random.Random(2))
    here = plane.nodes[0]
    assert oracle_decision(plane, plane.nodes, here).kind is Kind.LOCAL
    here.busy = here.capacity
    decision = oracle_decision(plane, plane.nodes, here)
    assert decision.kind is Kind.FORWARD
    assert decision.targets == (plane.nodes[plane.by_rtt[0][0]].node_id,)
    for node in plane.nodes:
        node.busy = node.capacity
    everyone_full = oracle_decision(plane, plane.nodes, here)
    assert everyone_full.kind in (Kind.LOCAL, Kind.FORWARD)  # the shortest queue per slot, wherever it is

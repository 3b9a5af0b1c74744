"""Vivaldi converges on a synthetic latency map and ranks peers by predicted RTT."""

from __future__ import annotations

import random
import statistics

from p2pfaas.dht.vivaldi import Coordinate, Vivaldi
from p2pfaas.sim import SyntheticLatency


def test_coordinates_predict_rtts_of_a_synthetic_map() -> None:
    latency = SyntheticLatency(seed=3)
    hosts = [f"10.0.{i}.1" for i in range(60)]
    rng = random.Random(1)
    nodes = {h: Vivaldi(random.Random(h)) for h in hosts}
    for _ in range(60 * 300):  # each node measures random peers, as its RPCs do
        a, b = rng.sample(hosts, 2)
        rtt = latency(a, b) + latency(b, a)
        nodes[a].observe(rtt, nodes[b].coord, nodes[b].error)
    errors = [
        abs(nodes[a].predict_rtt_s(nodes[b].coord) - (latency(a, b) + latency(b, a))) / (latency(a, b) * 2)
        for a in hosts
        for b in hosts
        if a != b
    ]
    assert statistics.median(errors) < 0.1
    assert statistics.median(v.error for v in nodes.values()) < 0.1
    # Picking the predicted-nearest of 20 candidates lands close to the truly nearest.
    ratios = []
    for a in hosts[:20]:
        others = [b for b in hosts if b != a][:20]
        picked = min(others, key=lambda b: nodes[a].predict_rtt_s(nodes[b].coord))
        best = min(others, key=lambda b: latency(a, b))
        ratios.append(latency(a, picked) / latency(a, best))
    assert statistics.median(ratios) <= 1.2


def test_nonsense_samples_and_coordinates_are_ignored() -> None:
    viv = Vivaldi(random.Random(0))
    viv.observe(-1.0, Coordinate(), 0.5)
    viv.observe(float("nan"), Coordinate(), 0.5)
    viv.observe(0.05, Coordinate(), float("inf"))
    assert viv.samples == 0 and viv.coord == Coordinate()
    assert Coordinate.from_tuple((1.0, float("nan"), 0.0)) is None
    assert Coordinate.from_tuple((1.0, 2.0)) is None
    assert Coordinate.from_tuple((1e6, 0.0, 0.0)) is None

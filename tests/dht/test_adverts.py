"""Ranking adverts: live, not draining, within price, trusted; free slots first, then predicted RTT."""

from __future__ import annotations

from p2pfaas.dht.adverts import Reputation, rank
from p2pfaas.dht.records import advert_key, make_record
from p2pfaas.dht.vivaldi import Coordinate
from p2pfaas.dht.wire import Capacity, Record
from p2pfaas.identity import KeyPair

NOW = 1_000_000.0


def _advert(
    name: str, x: float, *, free: int = 2, price: int = 10, draining: bool = False, ttl: float = 60
) -> Record:
    capacity = Capacity(("python3.11",), 4, 4096, free, price, 5, 0.1, (x, 0.0, 0.001), 0.1, draining)
    return make_record(
        KeyPair.from_seed(name.encode()),
        key=advert_key("python3.11"),
        seq=1,
        expires_at=NOW + ttl,
        host="10.0.0.1",
        port=8000,
        capacity=capacity,
    )


def test_free_nodes_come_first_nearest_first_and_the_rest_are_filtered() -> None:
    records = [
        _advert("far", 0.100),
        _advert("near", 0.010),
        _advert("full", 0.001, free=0),
        _advert("draining", 0.002, draining=True),
        _advert("dear", 0.003, price=1000),
        _advert("expired", 0.004, ttl=-1),
    ]
    ranked = rank(records, own=Coordinate(), now=NOW, count=10, max_price=100)
    names = {KeyPair.from_seed(n.encode()).node_id: n for n in ("far", "near", "full")}
    assert [names[a.node_id] for a in ranked] == ["near", "far", "full"]
    assert ranked[0].predicted_rtt_s < ranked[1].predicted_rtt_s
    assert ranked[0].url == "http://10.0.0.1:8000"
    assert len(rank(records, own=Coordinate(), now=NOW, count=1)) == 1


def test_a_node_that_keeps_failing_drops_out_for_a_while() -> None:
    reputation = Reputation(floor=0.3, heal_per_s=0.02)
    liar = KeyPair.from_seed(b"near").node_id
    records = [_advert("near", 0.01), _advert("far", 0.1)]
    reputation.failed(liar, NOW)
    assert rank(records, own=Coordinate(), now=NOW, count=1, reputation=reputation)[0].node_id == liar
    reputation.failed(liar, NOW)
    assert rank(records, own=Coordinate(), now=NOW, count=1, reputation=reputation)[0].node_id != liar
    assert rank(records, own=Coordinate(), now=NOW + 50, count=1, reputation=reputation)[0].node_id == liar

"""The routing table: true k closest (defect 1), eviction after repeated timeouts (defect 4), subnet bound."""

from __future__ import annotations

import random
from typing import Any

from kademlia.node import Node
from kademlia.routing import RoutingTable

from p2pfaas.dht.routing import SecureRoutingTable, range_key, subnet_of


class _NoPings:
    """The table's protocol seam: a full far bucket asks it to ping the bucket's head; nothing answers."""

    def __init__(self) -> None:
        self.pinged: list[Node] = []

    def spawn(self, coro: Any) -> None:
        coro.close()

    async def call_ping(self, node: Node) -> None:
        self.pinged.append(node)


def _ids(rng: random.Random, count: int) -> list[Node]:
    return [Node(rng.randbytes(20), f"10.{i // 250}.{i % 250}.1", 4000) for i in range(count)]


def _tables(me: Node) -> tuple[SecureRoutingTable, RoutingTable]:
    ours = SecureRoutingTable(_NoPings(), 20, me, clock=lambda: 0.0)
    stock = RoutingTable(_NoPings(), 20, me)
    return ours, stock


def test_find_neighbors_returns_the_true_k_closest_where_the_stock_table_does_not() -> None:
    rng = random.Random(1)
    stock_short = 0
    for trial in range(40):
        me = Node(rng.randbytes(20))
        ours, stock = _tables(me)
        contacts = _ids(rng, 200)
        for node in contacts:
            ours.add_contact(node)
            stock.add_contact(node)
        for _ in range(25):
            target = Node(rng.randbytes(20))
            held = ours.contacts()
            truth = sorted(held, key=target.distance_to)[:20]
            assert ours.find_neighbors(target) == truth, f"trial {trial}"
            stock_found = stock.find_neighbors(target)
            stock_short += [n.id for n in stock_found] != [n.id for n in truth]
    assert stock_short > 0  # the stock TableTraverser stops early (KADEMLIA.md defect 1)


def test_a_contact_survives_single_timeouts_and_goes_after_three_in_a_row() -> None:
    me = Node(b"\x00" * 20)
    ours, _ = _tables(me)
    peer = Node(b"\x80" + bytes(19), "10.0.0.1", 4000)
    ours.add_contact(peer)
    assert not ours.note_failure(peer) and not ours.note_failure(peer)
    ours.note_success(peer)  # an answer clears the count
    assert not ours.note_failure(peer) and not ours.note_failure(peer)
    assert peer in ours.contacts()
    assert ours.note_failure(peer) and peer not in ours.contacts()


def test_the_stock_protocol_evicts_after_one_timeout() -> None:
    from kademlia.protocol import KademliaProtocol
    from kademlia.storage import ForgetfulStorage

    stock = KademliaProtocol(Node(b"\x00" * 20), ForgetfulStorage(), 20)
    peer = Node(b"\x80" + bytes(19), "10.0.0.1", 4000)
    stock.router.add_contact(peer)
    stock.handle_call_response((False, None), peer)
    assert stock.router.find_neighbors(Node(bytes(20))) == []  # gone after ONE timeout (defect 4)


def test_one_address_block_takes_at_most_two_per_bucket_and_eight_per_table() -> None:
    rng = random.Random(2)
    ours, stock = _tables(Node(rng.randbytes(20)))
    sybils = [Node(rng.randbytes(20), f"203.0.113.{i}", 4000) for i in range(100)]
    for node in sybils:
        ours.add_contact(node)
        stock.add_contact(node)
    assert len(ours.contacts()) <= 8 and ours.rejected_subnet >= 92
    assert sum(len(b) for b in stock.buckets) > 20  # the stock table takes them all


def test_subnets_are_slash_24_and_loopback_endpoints_count_apart() -> None:
    assert subnet_of("10.1.2.3") == subnet_of("10.1.2.200") != subnet_of("10.1.3.3")
    assert subnet_of("2001:db8::1") == subnet_of("2001:db8::ffff")
    assert subnet_of("127.0.0.1", 4000) != subnet_of("127.0.0.1", 4001)


def test_within_our_own_range_contacts_count_per_host_so_a_lan_of_volunteers_fits() -> None:
    """Issue #12: fifty volunteers of one office /24 keep each other; outsiders' blocks stay bounded."""
    rng = random.Random(3)
    ours, _ = _tables(Node(rng.randbytes(20), "192.0.2.1", 4000))
    ours.home.add(subnet_of("192.0.2.1"))
    neighbours = [Node(rng.randbytes(20), f"192.0.2.{i}", 4000) for i in range(2, 52)]
    sybils = [Node(rng.randbytes(20), f"203.0.113.{i}", 4000) for i in range(100)]
    for node in [*neighbours, *sybils]:
        ours.add_contact(node)
    kept = {n.ip for n in ours.contacts()}
    assert {n.ip for n in neighbours} <= kept  # every LAN neighbour
    assert sum(ip.startswith("203.0.113.") for ip in kept) <= 8  # another block: still eight at most
    # One host of our range running many ids is still one host: two per bucket, eight per table.
    crowd = [Node(rng.randbytes(20), "192.0.2.200", port) for port in range(5000, 5100)]
    for node in crowd:
        ours.add_contact(node)
    assert sum(n.ip == "192.0.2.200" for n in ours.contacts()) <= 8


def test_set_home_claims_an_addresss_range_but_not_loopback_or_a_name() -> None:
    ours, _ = _tables(Node(bytes(20), "192.0.2.1", 4000))
    for host in ("127.0.0.1", "::1", "node.example.org"):
        ours.set_home(host)
    assert ours.home == set()  # loopback endpoints count apart already; a name has no range
    ours.set_home("192.0.2.1")
    ours.set_home("2001:db8::1")
    assert ours.home == {subnet_of("192.0.2.77"), subnet_of("2001:db8::ffff")}
    assert range_key("192.0.2.7", 4000, ours.home) == "192.0.2.7"  # within our range: per host
    assert range_key("203.0.113.7", 4000, ours.home) == subnet_of("203.0.113.7")

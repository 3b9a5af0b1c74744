"""A hostile DHT node for simulations: the eclipse/poisoning attacker that the defences are measured
against (tests/dht/test_sim.py, bench/bench_dht.py).

It speaks the protocol correctly (its messages are signed by its own key, so nothing drops them as
forged) but lies: every node lookup gets made-up contacts close to the target on a few subnets, every
value lookup the same (it hides every record), and every store is "accepted" and dropped.
"""

from __future__ import annotations

from kademlia.node import Node

from p2pfaas.dht import wire
from p2pfaas.dht.node import DhtNode
from p2pfaas.dht.protocol import SecureProtocol

FAKE_PORT = 4000


def fake_contacts(target: bytes, count: int) -> list[tuple[bytes, str, int]]:
    """`count` made-up (node id, host, port) contacts next to `target`, on four /16s."""
    return [(target[:-1] + bytes([i]), f"10.{250 + i % 4}.{i}.1", FAKE_PORT) for i in range(count)]


class LyingProtocol(SecureProtocol):
    def _on_find_node(self, msg: wire.FindNode, source: Node) -> wire.Reply:
        fake = tuple(wire.Contact(i, h, p) for i, h, p in fake_contacts(msg.target, self.config.ksize))
        return self._reply(msg.rpc_id, contacts=fake)

    def _on_find_value(self, msg: wire.FindValue, source: Node) -> wire.Reply:
        return self._on_find_node(wire.FindNode(msg.rpc_id, msg.client, msg.key, b"", b""), source)

    def _on_store(self, msg: wire.Store, source: Node) -> wire.Reply:
        return self._reply(msg.rpc_id, accepted=True)


class LyingNode(DhtNode):
    protocol_class = LyingProtocol

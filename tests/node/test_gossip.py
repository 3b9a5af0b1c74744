"""Gossip cores pumped in memory (no sockets): signed reports spread, age, and forgeries are refused."""

from __future__ import annotations

import dataclasses
import random

import pytest

from p2pfaas.errors import SignatureError, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.node.gossip import Gossiper, LocalLoad
from p2pfaas.placement.view import LoadView
from p2pfaas.placement.wire import GossipExchange

DIGEST = "d" * 64


def _gossiper(name: str, peers: dict[str, Gossiper], *, free: int = 1, fanout: int = 2) -> Gossiper:
    keys = KeyPair.from_seed(name.encode())
    load = LocalLoad(capacity=2, free_slots=free, queue_length=0, draining=False, warm={DIGEST: 1}, queued={})

    async def exchange(url: str, msg: GossipExchange) -> GossipExchange:
        peer = peers.get(url)
        if peer is None:
            raise Unreachable(f"{url} is down")
        peer.receive(msg)
        return peer.message()

    g = Gossiper(
        keys=keys,
        view=LoadView(self_id=keys.key_id, max_age_s=10.0),
        local_load=lambda: load,
        exchange=exchange,
        neighbours=lambda: list(peers),
        rng=random.Random(name),
        url=f"http://{name}",
        fanout=fanout,
    )
    peers[g.url] = g
    return g


async def test_push_pull_spreads_signed_reports_and_relays_them_onward() -> None:
    peers: dict[str, Gossiper] = {}
    a, b, c = (_gossiper(n, peers) for n in "abc")
    del peers[c.url]  # a knows only b
    await a.exchange_with(b.url)
    assert b.view.get(a.keys.key_id) is not None and a.view.get(b.keys.key_id) is not None
    peers[c.url] = c
    await c.exchange_with(b.url)  # c learns a through b's relay, signed by a
    learned = c.view.get(a.keys.key_id)
    assert learned is not None and learned.url == a.url and learned.warm == {DIGEST: 1}
    assert a.view.rtt(b.keys.key_id) >= 0.0


async def test_a_forged_sender_report_is_refused_and_a_forged_relay_skipped() -> None:
    peers: dict[str, Gossiper] = {}
    a, b = _gossiper("a", peers), _gossiper("b", peers)
    msg = a.message()
    forged = dataclasses.replace(msg, sender=dataclasses.replace(msg.sender, free_slots=2))
    with pytest.raises(SignatureError):
        b.receive(forged)
    assert b.view.get(a.keys.key_id) is None
    # A relayed report that a relayer altered is dropped; the honest sender's own report counts.
    c = _gossiper("c", peers)
    bad_relay = dataclasses.replace(a.own_report(), queue_length=99)
    b.receive(GossipExchange(sender=c.own_report(), relayed=(bad_relay,), relayed_age_ms=(0,)))
    assert b.view.get(c.keys.key_id) is not None and b.view.get(a.keys.key_id) is None


async def test_a_report_cannot_speak_for_another_node() -> None:
    peers: dict[str, Gossiper] = {}
    a, b = _gossiper("a", peers), _gossiper("b", peers)
    b.receive(a.message())
    held = b.view.get(a.keys.key_id)
    assert held is not None
    # The node id in the view is the hash of the signer's key; there is no id field to lie in.
    assert held.node_id == a.keys.key_id


async def test_a_round_talks_to_fanout_neighbours_and_forgets_one_that_is_gone() -> None:
    peers: dict[str, Gossiper] = {}
    nodes = [_gossiper(f"n{i}", peers, fanout=2) for i in range(6)]
    first = nodes[0]
    await first.round()
    assert first.exchanges == 2
    await first.announce()
    assert len(first.view) == 5
    gone = nodes[3]
    del peers[gone.url]
    first.neighbours = lambda: [gone.url]
    await first.round()
    assert first.failures == 1 and first.view.get(gone.keys.key_id) is None


async def test_sequence_numbers_only_grow_so_a_replayed_report_is_ignored() -> None:
    peers: dict[str, Gossiper] = {}
    a, b = _gossiper("a", peers), _gossiper("b", peers)
    old = a.message()
    new = a.message()
    assert new.sender.seq > old.sender.seq
    b.receive(new)
    b.receive(old)  # a replay of an older report
    held = b.view.get(a.keys.key_id)
    assert held is not None and held.seq == new.sender.seq

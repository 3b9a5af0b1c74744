"""Where a node gets a layer's wheels (`p2pfaas.node.wheel_source`): peers that announced the layer,
then the anchor; a peer that fails or sends other bytes is passed over. End to end: two real nodes
on the DHT, a numpy function, and the second node's layer comes from the first, not the anchor."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest

from p2pfaas.bundle.lock import LockedWheel, read_lock
from p2pfaas.client import AsyncClient
from p2pfaas.errors import NotFound, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.node.wheel_source import WheelSource
from tests.client.clientkit import dht_network
from tests.node.test_layers import PKG, locked
from tests.node.test_node_api import numpy_function

WHEEL = locked("pkg", PKG)


class Peers:
    def __init__(self, answers: dict[str, bytes | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def fetch(self, peer: str, wheel: LockedWheel) -> bytes:
        self.asked.append(peer)
        answer = self.answers[peer]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_peers_first_past_the_ones_that_fail_or_lie_then_the_anchor() -> None:
    peers = Peers({"liar": PKG[::-1], "gone": Unreachable("no route"), "good": PKG})
    anchor: list[LockedWheel] = []

    async def from_anchor(wheel: LockedWheel) -> bytes:
        anchor.append(wheel)
        return PKG

    lookups: list[str] = []

    async def providers(layer: str) -> list[str]:
        lookups.append(layer)
        return ["liar", "gone", "good", "me"]

    source = WheelSource(from_anchor, peers.fetch, random.Random(1), providers, own_url=lambda: "me")
    assert await source(WHEEL, "L") == PKG and anchor == [] and source.peer_bytes == len(PKG)
    assert "me" not in peers.asked and peers.asked[-1] == "good"
    await source(WHEEL, "L")
    assert lookups == ["L"]  # providers are looked up once per layer, not once per wheel
    peers.answers = {p: NotFound("evicted") for p in peers.answers}
    assert await source(WHEEL, "L") == PKG and len(anchor) == 1 and source.anchor_bytes == len(PKG)
    assert await WheelSource(from_anchor, peers.fetch, random.Random(1))(WHEEL, "M") == PKG  # no DHT yet


async def test_a_second_node_takes_a_layer_from_the_first_not_the_anchor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #16: layer bytes are fetched from the anchor once, then from peers that hold them."""
    monkeypatch.setenv("P2PFAAS_WHEEL_CACHE", str(tmp_path / "wheels"))
    async with (
        dht_network(tmp_path, ("a", "b")) as (anchor, (first, second)),
        contextlib.AsyncExitStack() as stack,
    ):
        for node in (first, second):
            await node.announce()
        client = await stack.enter_async_context(AsyncClient(anchor.url, KeyPair.generate()))
        await client.deploy(numpy_function(tmp_path, "np"))
        lock = read_lock(tmp_path / "np")
        assert lock is not None
        assert (await client.invoke("np", {"n": 10}, node_url=first.url)).value["sum"] == 45
        a, b = [n.service.layers.fetch_wheel for n in (first, second) if n.service.layers]
        assert isinstance(a, WheelSource) and isinstance(b, WheelSource)
        assert a.anchor_bytes == lock.size and a.peer_bytes == 0
        async with asyncio.timeout(60):  # a hang guard: the provider record travels over the DHT
            while first.url not in await b.providers(lock.layer_digest):
                b._providers.clear()
                await asyncio.sleep(0.2)
        assert (await client.invoke("np", {"n": 4}, node_url=second.url)).value["sum"] == 6
        assert b.peer_bytes == lock.size and b.anchor_bytes == 0

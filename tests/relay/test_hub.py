"""`RelayHub`: a relay carries callers' TLS tunnels to a node that dialled out to it, sees none of what
they carry, refuses forged hellos, answers 502 and 503 for nodes it cannot take a tunnel to, and drops
a link that sends garbage; a relay that hands a tunnel to another node is caught by the caller's pin."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from p2pfaas import codec, rpc, signing, tunnel
from p2pfaas.errors import IdentityMismatch, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.relay import RelayHub, relay_path, wire
from p2pfaas.relay.stream import Stream
from tests.relay.conftest import linked_node, relay

SECRET = "the-lessee's-payload-7f3a"


async def test_a_call_to_the_relayed_url_reaches_the_node_through_a_tunnel_the_relay_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    carried: list[bytes] = []  # every byte the relay passes, both ways
    send, deliver = Stream.send, Stream.deliver

    async def tapped_send(self: Stream, data: bytes) -> None:
        carried.append(bytes(data))
        await send(self, data)

    def tapped_deliver(self: Stream, data: bytes) -> bool:
        carried.append(bytes(data))
        return deliver(self, data)

    monkeypatch.setattr(Stream, "send", tapped_send)
    monkeypatch.setattr(Stream, "deliver", tapped_deliver)
    keys = KeyPair.generate()
    async with relay() as (relay_url, hub), linked_node(lambda: [relay_url], keys, tmp_path) as (link, urls):
        assert link.url == relay_url + relay_path(keys.key_id) and urls == [link.url]
        async with tunnel.session() as session:
            body = await rpc.request_bytes(
                session, "POST", f"{link.url}/v1/invoke?a=1", SECRET.encode(), timeout_s=10,
                headers={"X-T": "t"},
            )  # fmt: skip
            answer = json.loads(body)
            assert answer["method"] == "POST" and answer["path"] == f"/n/{keys.key_id}/v1/invoke?a=1"
            assert answer["body"] == SECRET and answer["x"] == "t"
            assert answer["remote"] == ""  # a socket pair: the node cannot take it for its own host

            # Many at once, answered out of order, each to its own caller, over pooled tunnels.
            async def one(i: int) -> str:
                url = f"{link.url}/k/{i}?sleep={0.05 * (i % 3)}"
                return str(json.loads(await rpc.request_bytes(session, "GET", url, timeout_s=10))["path"])

            paths = await asyncio.gather(*(one(i) for i in range(20)))
            assert paths == [f"/n/{keys.key_id}/k/{i}?sleep={0.05 * (i % 3)}" for i in range(20)]
            tunnels = hub.stats.tunnels
            assert 1 <= tunnels <= 21
            await one(0)
            assert hub.stats.tunnels == tunnels  # a warm call reuses a pooled tunnel

            # A body larger than the window crosses intact: the window paces it, nothing is lost.
            big = bytes(range(256)) * (3 * wire.WINDOW // 256 + 7)
            back = await rpc.request_bytes(session, "POST", f"{link.url}/x/bytes", big, timeout_s=30)
            assert back == big[::-1]
    seen = b"".join(carried)
    assert len(seen) > len(big) and SECRET.encode() not in seen and b"/v1/invoke" not in seen


async def test_a_node_not_connected_is_a_502_that_callers_take_for_unreachable() -> None:
    async with relay() as (relay_url, _), aiohttp.ClientSession() as plain, tunnel.session() as session:
        for node_id in ("a" * 40, "not-a-node-id"):
            async with plain.get(f"{relay_url}{tunnel.tunnel_path(node_id)}") as r:
                assert r.status == 502 and b"not connected to this relay" in await r.read()
        with pytest.raises(Unreachable, match="opened no tunnel"):
            url = f"{relay_url}{relay_path('a' * 40)}/v1/status"
            await rpc.request_bytes(session, "GET", url, timeout_s=5)


async def test_a_relay_that_hands_a_tunnel_to_another_node_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    meant, other = KeyPair.generate(), KeyPair.generate()
    async with (
        relay() as (relay_url, hub),
        linked_node(lambda: [relay_url], meant, tmp_path / "a"),
        linked_node(lambda: [relay_url], other, tmp_path / "b"),
        tunnel.session() as session,
    ):
        hub.links[meant.key_id] = hub.links[other.key_id]  # a hostile relay's doing
        with pytest.raises(IdentityMismatch, match=f"could not prove it is node {meant.key_id}"):
            await rpc.request_bytes(session, "POST", f"{relay_url}{relay_path(meant.key_id)}/v1/invoke",
                                    SECRET.encode(), timeout_s=10)  # fmt: skip


async def test_a_hello_signed_by_another_key_or_for_another_nonce_is_refused() -> None:
    async with relay() as (relay_url, hub), aiohttp.ClientSession() as session:
        keys = KeyPair.generate()
        for tamper in ("nonce", "relay", "signature"):
            async with session.ws_connect(f"{relay_url}/v1/relay/connect") as ws:
                challenge = codec.decode_as(wire.RelayChallenge, (await ws.receive()).data)
                nonce = bytes(32) if tamper == "nonce" else challenge.nonce
                relay_for = "http://elsewhere:1" if tamper == "relay" else challenge.relay_url
                hello = signing.sign(wire.RelayHello(nonce, relay_for, time.time(), b"", b""), keys)
                if tamper == "signature":
                    hello = wire.RelayHello(nonce, relay_for, hello.issued_at, hello.signer, bytes(64))
                await ws.send_bytes(codec.encode(hello))
                closing = await ws.receive()
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert hub.stats.refused_handshakes == 3 and not hub.links


async def test_more_tunnels_than_a_relay_holds_for_a_node_is_a_503(tmp_path: Path) -> None:
    keys = KeyPair.generate()
    async with (
        relay(RelayHub(max_streams=2)) as (relay_url, hub),
        linked_node(lambda: [relay_url], keys, tmp_path) as (link, _),
        tunnel.session() as session,
    ):

        async def slow() -> str:
            try:
                await rpc.request_bytes(session, "GET", f"{link.url}/slow?sleep=1", timeout_s=10)
            except Unreachable as exc:
                return str(exc)
            return "ok"

        outcomes = await asyncio.gather(*(slow() for _ in range(3)))
        refused = [o for o in outcomes if o != "ok"]
        assert len(refused) == 1 and "HTTP 503" in refused[0]
        assert hub.stats.busy == 1


@pytest.mark.parametrize(
    "frame", [b"\x00garbage", codec.encode(wire.RelayWelcome("x", "y")), codec.encode(wire.TunnelOpen(1))]
)
async def test_a_malformed_frame_drops_the_link_not_the_relay(frame: bytes) -> None:
    keys = KeyPair.generate()
    async with relay() as (relay_url, hub), aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{relay_url}/v1/relay/connect") as ws:
            challenge = codec.decode_as(wire.RelayChallenge, (await ws.receive()).data)
            hello = signing.sign(
                wire.RelayHello(challenge.nonce, challenge.relay_url, time.time(), b"", b""), keys
            )
            await ws.send_bytes(codec.encode(hello))
            welcome = codec.decode_as(wire.RelayWelcome, (await ws.receive()).data)
            assert welcome.node_id == keys.key_id and keys.key_id in hub.links
            await ws.send_bytes(frame)
            closing = await ws.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        for _ in range(50):
            if not hub.links:
                break
            await asyncio.sleep(0.02)
        assert not hub.links


async def test_a_slow_caller_gets_the_whole_of_a_large_answer(tmp_path: Path) -> None:
    """Found by review: a caller that read a large answer slowly got it cut off (the window overrun
    above), and the node's side of the dropped stream stayed open."""
    keys = KeyPair.generate()
    size = 8 * wire.WINDOW
    async with (
        relay() as (relay_url, hub),
        linked_node(lambda: [relay_url], keys, tmp_path) as (link, _),
        tunnel.session() as session,
    ):
        target, via = tunnel.route(f"{link.url}/x/big?n={size}")
        assert via is not None
        async with session.get(target, headers={tunnel.VIA_HEADER: via}) as answer:
            await asyncio.sleep(1.0)  # a slow reader: the window holds the node back meanwhile
            assert len(await answer.read()) == size
        assert hub.stats.overruns == 0


async def test_a_full_relay_lets_a_node_replace_its_own_stale_link(tmp_path: Path) -> None:
    """Found by review: at max_links, a node whose old socket the relay had not yet dropped was
    refused its own place for a few heartbeats."""
    keys = KeyPair.generate()
    async with (
        relay(RelayHub(max_links=1)) as (relay_url, hub),
        linked_node(lambda: [relay_url], keys, tmp_path),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{relay_url}/v1/relay/connect") as ws,
    ):
        challenge = codec.decode_as(wire.RelayChallenge, (await ws.receive()).data)
        hello = signing.sign(
            wire.RelayHello(challenge.nonce, challenge.relay_url, time.time(), b"", b""), keys
        )
        await ws.send_bytes(codec.encode(hello))
        assert codec.decode_as(wire.RelayWelcome, (await ws.receive()).data).node_id == keys.key_id
        other = KeyPair.generate()  # a second node finds the relay full
        async with session.ws_connect(f"{relay_url}/v1/relay/connect") as full:
            challenge = codec.decode_as(wire.RelayChallenge, (await full.receive()).data)
            hello = signing.sign(
                wire.RelayHello(challenge.nonce, challenge.relay_url, time.time(), b"", b""), other
            )
            await full.send_bytes(codec.encode(hello))
            closing = await full.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert list(hub.links) == [keys.key_id]

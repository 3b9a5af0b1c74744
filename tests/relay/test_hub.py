"""`RelayHub`: a relay carries HTTP requests to a node that dialled out to it, refuses forged hellos,
answers 502, 503 and 504 for nodes it cannot reach in time, and drops a link that answers garbage."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import pytest

from p2pfaas import codec, rpc, signing
from p2pfaas.errors import Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.messages import NodeStatus
from p2pfaas.relay import RelayLink, is_relayed, relay_path, wire
from tests.relay.conftest import node_app, relay, serve


async def test_a_request_to_the_relayed_url_reaches_the_node_and_comes_back() -> None:
    keys = KeyPair.generate()
    urls: list[str | None] = []
    async with relay() as (relay_url, hub), serve(node_app()) as local, aiohttp.ClientSession() as session:

        async def candidates() -> list[str]:
            return [relay_url]

        async with RelayLink(
            session=session, keys=keys, candidates=candidates, local_url=local, on_url=urls.append,
            rng=random.Random(1),
        ) as link:  # fmt: skip
            await asyncio.wait_for(link.connected.wait(), 10)
            assert link.url == relay_url + relay_path(keys.key_id) and urls == [link.url]
            async with session.post(f"{link.url}/v1/invoke?a=1", data=b"payload", headers={"X-T": "t"}) as r:
                assert r.status == 201 and r.headers["X-Answer"] == "yes"
                assert await r.json() == {
                    "method": "POST",
                    "path": "/v1/invoke?a=1",
                    "body": "payload",
                    "x": "t",
                }

            # Many at once, answered out of order, each to its own caller.
            async def one(i: int) -> str:
                delay = 0.05 * (i % 3)
                async with session.get(f"{link.url}/n/{i}?sleep={delay}") as r:
                    return str((await r.json())["path"])

            paths = await asyncio.gather(*(one(i) for i in range(20)))
            assert paths == [f"/n/{i}?sleep={0.05 * (i % 3)}" for i in range(20)]
            assert hub.stats.requests == 21


async def test_a_node_not_connected_is_a_clear_502_and_a_bad_id_too() -> None:
    async with relay() as (relay_url, _), aiohttp.ClientSession() as session:
        for node_id in ("a" * 40, "not-a-node-id"):
            async with session.get(f"{relay_url}/v1/relay/{node_id}/v1/status") as r:
                assert r.status == 502 and b"not connected to this relay" in await r.read()
        # Callers take it for what it is: the node is not reachable there (they try another node).
        with pytest.raises(Unreachable, match="not connected to this relay"):
            await rpc.call(
                session, "GET", f"{relay_url}/v1/relay/{'a' * 40}/v1/status", NodeStatus, timeout_s=5
            )


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


async def test_a_node_that_does_not_answer_in_time_is_a_504_and_too_many_is_a_503() -> None:
    keys = KeyPair.generate()
    async with relay() as (relay_url, hub), serve(node_app()) as local, aiohttp.ClientSession() as session:
        hub.request_timeout_s, hub.max_streams = 0.3, 2

        async def candidates() -> list[str]:
            return [relay_url]

        async with RelayLink(
            session=session, keys=keys, candidates=candidates, local_url=local, on_url=lambda _: None,
            rng=random.Random(3),
        ) as link:  # fmt: skip
            await asyncio.wait_for(link.connected.wait(), 10)

            async def status(path: str) -> int:
                async with session.get(f"{link.url}{path}") as r:
                    return r.status

            statuses = await asyncio.gather(*(status("/slow?sleep=1") for _ in range(3)))
            assert sorted(statuses) == [503, 504, 504]


@pytest.mark.parametrize("frame", [b"\x00garbage", codec.encode(wire.RelayWelcome("x", "y"))])
async def test_a_malformed_answer_drops_the_link_not_the_relay(frame: bytes) -> None:
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


def test_relayed_urls_are_told_from_direct_ones_over_tls_too() -> None:
    node, relay_id = "b" * 40, "c" * 40
    assert is_relayed(f"http://192.0.2.11:8700{relay_path(node)}")
    assert is_relayed(f"https://192.0.2.12:8800/n/{relay_id}{relay_path(node)}")
    assert not is_relayed(f"https://192.0.2.12:8800/n/{relay_id}")  # a direct TLS node (can relay)
    assert not is_relayed("http://192.0.2.13:8800")

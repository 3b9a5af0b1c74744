"""The node's HTTP API (`p2pfaas.node.app`) on a real node on 127.0.0.1: every route also under the
node's identity path, status as MessagePack or JSON, bundles it lacks a 404, and the delegation
chain header of the internal hand-off."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from p2pfaas import codec, rpc, tickets, tls
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.errors import DecodeError, NotFound
from p2pfaas.identity import KeyPair
from p2pfaas.messages import NodeStatus
from p2pfaas.node.app import decode_chain, encode_chain
from tests.node.servicekit import running_node


async def test_every_route_is_also_under_the_identity_path(anchor: AnchorServer, tmp_path: Path) -> None:
    async with running_node(anchor.url, tmp_path, "n1") as node, aiohttp.ClientSession() as session:
        for base in (node.url, node.url + tls.identity_path(node.keys.key_id)):
            status = await rpc.call(session, "GET", f"{base}/v1/status", NodeStatus, timeout_s=10)
            assert status.node_id == node.keys.key_id and status.in_flight == 0
            with pytest.raises(NotFound):
                await rpc.request_bytes(session, "GET", f"{base}/v1/bundles/{'ab' * 32}", timeout_s=10)
        headers = {"Accept": "application/json"}
        async with session.get(f"{node.url}/v1/status", headers=headers) as answer:
            assert answer.status == 200 and (await answer.json())["node_id"] == node.keys.key_id


def test_the_delegation_chain_header_round_trips_and_refuses_what_is_not_hex() -> None:
    a, b, c = (KeyPair.from_seed(bytes([n]) * 32) for n in range(3))
    chain = (tickets.delegate("i1", b.key_id, a), tickets.delegate("i1", c.key_id, b))
    assert decode_chain(encode_chain(chain)) == chain
    assert decode_chain("") == () == decode_chain(encode_chain(()))
    with pytest.raises(DecodeError, match="not hex"):
        decode_chain("zz")
    with pytest.raises(DecodeError):
        decode_chain(codec.encode(NodeStatus("n", "u", "e", True, 0, 0, 0)).hex())  # not a delegation

"""The node daemon (p2pfaas/node/daemon.py) wires a node together: it serves on its port, announces
itself to the anchor (which dials it back and lists it), answers /v1/status with its id, and stops
when told. A real node and anchor in this process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from p2pfaas import rpc
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.messages import NodeList, NodeStatus
from p2pfaas.node.reachability import Reach
from tests.node.servicekit import running_node


async def test_a_node_serves_announces_itself_is_listed_and_stops_when_told(
    anchor: AnchorServer, tmp_path: Path
) -> None:
    async with running_node(anchor.url, tmp_path, "n", dht_port=None) as node, aiohttp.ClientSession() as s:
        assert node.url.startswith("http://127.0.0.1:") and node.reach is Reach.FIXED  # loopback: as is
        status = await rpc.call(s, "GET", f"{node.url}/v1/status", NodeStatus, timeout_s=10)
        assert (status.node_id, status.url, status.away) == (node.node_id, node.url, "")
        await node.announce()
        listed = await rpc.call(s, "GET", f"{anchor.url}/v1/nodes", NodeList, timeout_s=10)
        assert [(n.node_id, n.url) for n in listed.nodes] == [(node.node_id, node.url)]
        node.stop()
        await asyncio.wait_for(node.stopped(), timeout=30)

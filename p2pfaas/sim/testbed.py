"""Building blocks for simulated networks: the real anchor and nodes, each on its own in-memory host.

Tests, benchmarks and scenarios assemble their networks from these so that addresses, file names and
seeds are derived one way everywhere (a node's key and randomness come from `seed` and its index, so a
run is reproducible). Everything is entered on the caller's `AsyncExitStack` and stops with it::

    async with contextlib.AsyncExitStack() as stack:
        anchor = await add_anchor(net, stack, root)
        nodes = [await add_node(net, stack, anchor.url, root, i, seed=7, executor=ModelExecutor(...))
                 for i in range(20)]
        client_ip = net.add_host(CLIENT_IP)

The addresses are private ones that exist only in the `InMemoryNetwork`.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.exec.base import Executor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from p2pfaas.sim.net import InMemoryNetwork

ANCHOR_IP = "10.0.0.1"
ANCHOR_PORT = 8700
NODE_PORT = 8000
CLIENT_IP = "10.0.2.1"


def node_ip(index: int) -> str:
    """Node `index`'s address: 10.1.x.y, room for 64,000 nodes."""
    return f"10.1.{index // 250}.{index % 250 + 1}"


async def add_anchor(
    net: InMemoryNetwork, stack: contextlib.AsyncExitStack, root: Path, **anchor_options: Any
) -> AnchorServer:
    """An anchor on its own host, with an SQLite database under `root`."""
    ip = net.add_host(ANCHOR_IP, name="anchor.sim")
    with net.on_host(ip):
        anchor = AnchorServer(
            f"sqlite+aiosqlite:///{root / 'anchor.db'}", host=ip, port=ANCHOR_PORT, **anchor_options
        )
        return await stack.enter_async_context(anchor)


async def add_node(
    net: InMemoryNetwork,
    stack: contextlib.AsyncExitStack,
    anchor_url: str,
    root: Path,
    index: int,
    *,
    seed: object,
    executor: Executor,
    **config: Any,
) -> NodeDaemon:
    """Node `index` on its own host, its key and randomness derived from `seed` and `index`.

    `config` sets further `NodeConfig` fields (slots, prices, placement policy, DHT port, ...).
    """
    ip = net.add_host(node_ip(index))
    node_config = NodeConfig(
        unpaid_owners=True,  # among friends: owners run their own functions unpaid
        anchor_url=anchor_url,
        key_path=root / f"node{index}.key",
        work_dir=root / f"node{index}",
        host=ip,
        port=NODE_PORT,
        **{"tls": "off", **config},  # the simulated network carries no TLS; the lab tests it on real stacks
    )
    keys = KeyPair.from_seed(f"{seed}/node/{index}".encode())
    rng = random.Random(f"{seed}/node/{index}")
    with net.on_host(ip):
        node = NodeDaemon(node_config, executor=executor, keys=keys, rng=rng)
        return await stack.enter_async_context(node)

"""A small placement network on the simulator: an anchor, N nodes with gossip and routing, a client.

Real anchor, node (router, gossip, jobs) and client code on the virtual clock and in-memory network;
only run time is modelled (ModelExecutor).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from p2pfaas import sim
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.exec.model_exec import ModelExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.sim import testbed
from tests.functions import write_function


@dataclass
class PlacementNet:
    net: sim.InMemoryNetwork
    anchor: AnchorServer
    nodes: list[NodeDaemon]
    executors: list[ModelExecutor]
    client: AsyncClient
    root: Path

    def executions(self) -> int:
        return sum(e.invocations for e in self.executors)


@contextlib.asynccontextmanager
async def placement_net(
    net: sim.InMemoryNetwork,
    root: Path,
    *,
    seed: int,
    nodes: int = 6,
    slots: int = 1,
    mean_run_s: float = 0.2,
    policy: str = "ours",
    dht: bool = False,
    callback_allow: tuple[str, ...] = (),
) -> AsyncIterator[PlacementNet]:
    async with contextlib.AsyncExitStack() as stack:
        anchor = await testbed.add_anchor(net, stack, root)
        daemons: list[NodeDaemon] = []
        executors: list[ModelExecutor] = []
        for i in range(nodes):
            executor = ModelExecutor(
                rng=random.Random(f"{seed}/executor/{i}"),
                slots=slots,
                mean_run_s=mean_run_s,
                cold_start_s=0.1,
            )
            node = await testbed.add_node(
                net,
                stack,
                anchor.url,
                root,
                i,
                seed=seed,
                executor=executor,
                slots=slots,
                queue_size=64,
                placement=policy,
                gossip_period_s=0.5,
                # With `dht`, nodes join an overlay through the first node (adverts, Vivaldi).
                dht_port=8468 if dht else None,
                peers=((testbed.node_ip(0), 8468),) if dht and i > 0 else (),
                callback_allow=callback_allow,  # job callbacks beyond public addresses (node/callbacks.py)
            )
            daemons.append(node)
            executors.append(executor)
        client_ip = net.add_host(testbed.CLIENT_IP)
        with net.on_host(client_ip):
            client = await stack.enter_async_context(
                AsyncClient(anchor.url, KeyPair.from_seed(f"{seed}/lessee".encode()), rng=random.Random(seed))
            )
            await client.deploy(write_function(root, "echo", timeout_s=30.0))
        for node in daemons:
            with net.on_host(node.config.host):
                await node.announce()
        for node in daemons:  # learn the node list now rather than at the next refresh
            with net.on_host(node.config.host):
                await node.placement.refresh_neighbours()
        await asyncio.sleep(3.0)  # a few gossip rounds: every view fills
        with net.on_host(client_ip):
            yield PlacementNet(net, anchor, daemons, executors, client, root)

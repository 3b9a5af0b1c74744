"""`RouterStats` (p2pfaas/node/stats.py) as a network of routers keeps them: every call is counted as
run here exactly once across the nodes, and the entry node's forwards are the calls that ran
elsewhere (real routers on the simulator)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from p2pfaas import sim
from tests.placement.harness import placement_net


def test_each_call_is_counted_once_where_it_ran_and_once_where_it_was_forwarded(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=5, nodes=4, slots=1) as pn:
            entry = pn.nodes[0]
            outcomes = await asyncio.gather(
                *(pn.client.invoke("echo", {"i": i}, node_url=entry.url) for i in range(16))
            )
            stats = [node.placement.router.stats for node in pn.nodes]
            assert sum(s.local for s in stats) == 16 == pn.executions()
            elsewhere = sum(1 for o in outcomes if o.node_id != entry.node_id)
            assert elsewhere > 0 and stats[0].forwarded == elsewhere
            assert stats[0].local == 16 - elsewhere and stats[0].joined == stats[0].cached == 0

    sim.run(main, seed=5)

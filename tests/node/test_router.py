"""The router on the simulator: local-or-forward, exactly once per node, retries under the same id."""

from __future__ import annotations

import asyncio
from pathlib import Path

from p2pfaas import rpc, sim
from p2pfaas.messages import InvokeResult
from tests.placement.harness import placement_net


def test_an_entry_node_without_room_forwards_and_every_invocation_completes(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=3, nodes=6, slots=1) as pn:
            entry = pn.nodes[0]
            assert len(entry.placement.view) == 5  # gossip taught it every peer
            outcomes = await asyncio.gather(
                *(pn.client.invoke("echo", {"i": i}, node_url=entry.url) for i in range(30))
            )
            assert [o.value for o in outcomes] == [{"echo": {"i": i}} for i in range(30)]
            ran_on = {o.node_id for o in outcomes}
            assert len(ran_on) >= 4, ran_on  # spread over the network, not queued at the entry
            assert entry.placement.router.stats.forwarded >= 10
            assert pn.executions() == 30  # each invocation ran exactly once
            # Results carry the executing node's own signature; the client mapped it back to that node.
            assert {o.node_url for o in outcomes} <= {n.url for n in pn.nodes}

    sim.run(main, seed=3)


def test_an_invocation_id_runs_once_per_node_however_often_it_arrives(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=4, nodes=2, slots=2) as pn:
            request = await pn.client._signed_request("echo", {"x": 1}, None)
            url = f"{pn.nodes[0].url}/v1/invoke"

            async def send() -> InvokeResult:
                return await rpc.call(pn.client.session, "POST", url, InvokeResult, request, timeout_s=30)

            first, second = await asyncio.gather(send(), send())  # concurrently: one run, shared
            third = await send()  # afterwards: the cached result
            assert first == second == third
            assert pn.executions() == 1
            stats = pn.nodes[0].placement.router.stats
            assert stats.joined == 1 and stats.cached == 1

    sim.run(main, seed=4)


def test_a_crashed_entry_node_costs_a_retry_under_the_same_id_and_nothing_is_lost(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=5, nodes=6, slots=1, mean_run_s=0.5) as pn:
            victim = pn.nodes[2]
            gate = asyncio.Semaphore(12)

            async def one(i: int) -> tuple[int, str, str]:
                async with gate:
                    outcome = await pn.client.invoke("echo", {"i": i})
                assert outcome.value == {"echo": {"i": i}}
                return i, outcome.invocation_id, outcome.node_id

            async def crash_soon() -> int:
                await asyncio.sleep(1.0)
                held = victim.placement.router.in_progress()
                net.crash(victim.config.host)
                return held

            results, held = await asyncio.gather(asyncio.gather(*(one(i) for i in range(60))), crash_soon())
            assert held > 0  # the crash did take invocations down with it
            assert sorted(i for i, _, _ in results) == list(range(60))  # ... and every one completed
            assert len({inv for _, inv, _ in results}) == 60
            # An id runs twice among the survivors only if the crashed node held it (it had forwarded
            # it to a survivor, then the client retried it at another); the ledger charges it once.
            assert pn.executions() - pn.executors[2].invocations <= 60 + held

    sim.run(main, seed=5)

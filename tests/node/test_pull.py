"""Work pulling on the simulator: a node with room takes work that waits at a loaded neighbour."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

from p2pfaas import sim
from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.placement.policy import Gossip, LocalOnly
from tests.placement.harness import PlacementNet, placement_net


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # virtual time: 10 s at most
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def _queue_at(pn: PlacementNet, index: int, count: int) -> list[asyncio.Future[InvokeOutcome]]:
    """`count` invocations sent to node `index`, which keeps them all (local-only) for now."""
    node = pn.nodes[index]
    node.placement.router.policy = LocalOnly()
    calls: list[asyncio.Future[InvokeOutcome]] = [
        asyncio.ensure_future(pn.client.invoke("echo", {"i": i}, node_url=node.url)) for i in range(count)
    ]
    await _until(lambda: node.placement.router.queue_length() >= count - 1)  # one runs, the rest wait
    node.placement.router.policy = Gossip()
    return calls


def test_a_peer_reporting_room_gets_the_invocation_that_waited_longest(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=11, nodes=2, slots=1, mean_run_s=1.0) as pn:
            a, b = pn.nodes
            calls = await _queue_at(pn, 0, 3)
            waiting = [q.request.invocation_id for q in a.placement.router.slots.waiting]
            assert a.placement.router.offer(b.keys.key_id, 1) == 1
            outcomes = await asyncio.gather(*calls)
            assert sorted(o.value["echo"]["i"] for o in outcomes) == [0, 1, 2]
            pulled = [o for o in outcomes if o.node_id == b.keys.key_id]
            assert [o.invocation_id for o in pulled] == waiting[:1]  # the head of A's queue
            assert a.placement.router.stats.pulled == 1 and pn.executions() == 3

    sim.run(main, seed=11)


def test_a_refused_pull_goes_back_to_the_head_of_the_queue_and_runs_once(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=12, nodes=2, slots=1, mean_run_s=1.0) as pn:
            a, b = pn.nodes
            b.placement.router.policy = LocalOnly()
            busy_b = asyncio.ensure_future(pn.client.invoke("echo", "b", node_url=b.url))
            await _until(lambda: b.placement.router.free_slots() == 0)
            calls = await _queue_at(pn, 0, 3)
            head = a.placement.router.slots.waiting[0].request.invocation_id
            assert a.placement.router.offer(b.keys.key_id, 1) == 1  # B's report was stale: it is full
            await _until(lambda: a.placement.router.stats.pull_refused > 0)
            assert a.placement.router.slots.waiting[0].request.invocation_id == head  # its place kept
            a.placement.router.policy = LocalOnly()  # no further pulls: the rest runs at A
            outcomes = await asyncio.gather(*calls, busy_b)
            assert all(o.node_id == a.keys.key_id for o in outcomes[:3])
            assert pn.executions() == 4  # each invocation ran exactly once

    sim.run(main, seed=12)


def test_nodes_with_room_pull_work_and_policies_that_do_not_pull_never_hand_off(tmp_path: Path) -> None:
    """A burst into one node of a 6-node network: with ours, nodes that free a slot announce it and
    take queued work; with power of 2 (a published scheme without pulling) nothing is pulled."""
    pulled: dict[str, int] = {}

    async def burst(net: sim.InMemoryNetwork, policy: str) -> None:
        async with placement_net(net, tmp_path / policy, seed=13, nodes=6, slots=1, policy=policy) as pn:
            entry = pn.nodes[0]
            outcomes = await asyncio.gather(
                *(pn.client.invoke("echo", {"i": i}, node_url=entry.url) for i in range(40))
            )
            assert [o.value for o in outcomes] == [{"echo": {"i": i}} for i in range(40)]
            assert pn.executions() == 40
            pulled[policy] = sum(n.placement.router.stats.pulled for n in pn.nodes)
            if policy == "ours":
                assert sum(n.placement.room_pushes for n in pn.nodes) > 0

    for policy in ("power-of-2", "ours"):
        (tmp_path / policy).mkdir()
        sim.run(functools.partial(burst, policy=policy), seed=13)
    assert pulled["ours"] > 0 and pulled["power-of-2"] == 0

"""The router on the simulator: local-or-forward, exactly once per node, retries under the same id."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest

from p2pfaas import codec, rpc, signing, sim
from p2pfaas.client import AsyncClient
from p2pfaas.errors import Busy, Refused
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeResult
from p2pfaas.node.shared.invocations import ClaimKind
from p2pfaas.node.shared.tables import SharedTables
from p2pfaas.placement.wire import ForwardRequest
from tests.cli.clikit import p2pfaas
from tests.functions import write_function
from tests.placement.harness import placement_net
from tests.ports import free_port_block


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
            request = await pn.client.signed_request("echo", {"x": 1}, None)
            url = f"{pn.nodes[0].url}/v1/invoke"

            async def send() -> InvokeResult:
                return await rpc.call(pn.client.session, "POST", url, InvokeResult, request, timeout_s=30)

            first, second = await asyncio.gather(send(), send())  # concurrently: one run, shared
            third = await send()  # afterwards: the cached result
            assert first == second == third
            assert pn.executions() == 1
            stats = pn.nodes[0].placement.router.stats
            assert stats.joined == 1 and stats.cached == 1
            # Another key reusing the id neither reads that result nor runs anything.
            other = signing.sign(dataclasses.replace(request, signer=b"", signature=b""), KeyPair.generate())
            with pytest.raises(Refused) as refused:
                await rpc.call(pn.client.session, "POST", url, InvokeResult, other, timeout_s=30)
            assert refused.value.status == 409 and pn.executions() == 1

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


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def test_devnet_of_5_processes_loses_nothing_when_a_node_is_sigkilled_mid_burst(tmp_path: Path) -> None:
    """Real processes on loopback (the process executor: Docker start-up would dominate the test).

    A burst of 40 invocations that each take 0.5 s goes to random entry nodes; 0.3 s in, one node
    process is SIGKILLed. Clients retry a lost entry node elsewhere under the same invocation id,
    and entry nodes re-place what they had forwarded to it: every invocation of the burst completes.
    """
    directory = tmp_path / "devnet"
    port = free_port_block(6)
    up = p2pfaas(
        "devnet", "up", "--nodes", "5", "--port", str(port), "--dir", str(directory), "--detach",
        "--executor", "process",
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((directory / "state.json").read_text())
    try:
        async with AsyncClient(state["anchor_url"], KeyPair.generate()) as client:
            await client.deploy(write_function(tmp_path, "sleepy", timeout_s=20.0))
            assert len(await client.nodes(refresh=True)) == 5
            # Node 1 (the victim) runs the function once, so it holds a shim process when it dies.
            await client.invoke("sleepy", {"s": 0.01}, node_url=state["nodes"][1])
            await asyncio.sleep(5.0)  # gossip rounds (every 2 s): the nodes learn each other's load
            burst = [asyncio.ensure_future(client.invoke("sleepy", {"s": 0.5})) for _ in range(40)]
            await asyncio.sleep(0.3)
            victim = int(state["pids"][1])  # node 1
            os.kill(victim, signal.SIGKILL)
            outcomes = await asyncio.gather(*burst)
            assert [o.value for o in outcomes] == ["woke"] * 40
            assert len({o.invocation_id for o in outcomes}) == 40
            assert len({o.node_id for o in outcomes}) >= 3
            # Nothing had finished when it died, so whatever it held ran elsewhere.
            (killed,) = [n.node_id for n in await client.nodes() if n.url == state["nodes"][1]]
            assert killed not in {o.node_id for o in outcomes}
            # Its shims died with it: a crashed node leaves no process behind.
            shims = [int(pid.read_text()) for pid in (directory / "node-1" / "run").glob("*/pid")]
            assert shims, "node 1 had started a shim"
            for pid in shims:
                async with asyncio.timeout(30):  # a hang guard: the kernel kills them at once
                    while _alive(pid):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
    finally:
        down = p2pfaas("devnet", "down", "--dir", str(directory))
        assert down.returncode == 0, down.stdout + down.stderr
    # `devnet down` sends SIGTERM: each surviving node drained, then stopped.
    for i in (0, 2, 3, 4):
        log = (directory / f"node-{i}.log").read_text()
        assert "drained (clean)" in log and "stopped" in log, log[-2000:]


def test_a_refused_forward_leaves_its_id_free_in_the_nodes_shared_table(tmp_path: Path) -> None:
    """With worker processes (node/workers/) the id is claimed node-wide before the refusal
    checks; a refused forward must give the claim back, or a sibling would wait on it forever."""

    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=6, nodes=2, slots=1) as pn:
            tables = SharedTables.create(workers=2, spill_dir=tmp_path / "results")
            try:
                router = pn.nodes[0].placement.router
                router.shared = tables.invocations
                request = await pn.client.signed_request("echo", {"x": 1}, None)
                forward = signing.sign(
                    ForwardRequest(request=request, hops=1, must_accept=False, signer=b"", signature=b""),
                    KeyPair.generate(),
                )
                router.draining = True
                with pytest.raises(Busy):
                    await router.forwarded(forward)
                router.draining = False
                owner, now = request.signer + request.digest.encode(), asyncio.get_running_loop().time
                assert (
                    tables.invocations.lookup(request.invocation_id, owner, now=now()).kind is ClaimKind.NEW
                )
                result = await router.invoke(request)  # it runs when it comes again
                done = tables.invocations.lookup(request.invocation_id, owner, now=now())
                assert done.kind is ClaimKind.DONE and done.result == codec.encode(result)
            finally:
                tables.close()
                tables.unlink()

    sim.run(main, seed=6)

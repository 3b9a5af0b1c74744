"""Adaptive replication on the simulator: an anchor, 12 nodes of which 3 lie, a lessee, 160 calls.

Real anchor, node, client and trust code on the virtual clock and the in-memory network; only the
executor is a model (it echoes the payload; a liar answers something of its own instead). Every
call's answer must be right, the liars must be caught and distrusted, honest nodes never, and as
honest records grow the client must need fewer replicas per call (BOINC's adaptive replication).
The same seed gives the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import random
from pathlib import Path

from p2pfaas import rpc, sim
from p2pfaas.client import AsyncClient
from p2pfaas.client.replication import ReplicatedInvoker
from p2pfaas.exec.base import ExecResult, FunctionSpec
from p2pfaas.exec.model_exec import ModelExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.sim import testbed
from p2pfaas.trust.wire import ReputationList

NODES = 12
LIARS = 3
CALLS = 160
CONCURRENCY = 1  # one call at a time: the anchor's database (in threads) then sees reports in one order


@dataclasses.dataclass
class LyingModel(ModelExecutor):
    """A model node that skips the work and answers with something of its own (liars do not collude)."""

    tag: str = ""

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        result = await super().invoke(fn, payload, timeout_s=timeout_s)
        return dataclasses.replace(result, output=f'{{"lie": "{self.tag}"}}'.encode())


def write_deterministic(root: Path) -> Path:
    directory = root / "echo"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text("def handle(event):\n    return {'echo': event}\n")
    (directory / "p2pfaas.toml").write_text(
        'name = "echo"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        "memory_mb = 64\ntimeout_s = 30\ndeterministic = true\n"
    )
    return directory


async def _network(net: sim.InMemoryNetwork, root: Path, seed: int) -> dict[str, object]:
    async with contextlib.AsyncExitStack() as stack:
        anchor = await testbed.add_anchor(net, stack, root)
        nodes: list[NodeDaemon] = []
        for i in range(NODES):
            rng = random.Random(f"{seed}/executor/{i}")
            executor = (
                LyingModel(rng=rng, slots=2, tag=f"n{i}") if i < LIARS else ModelExecutor(rng=rng, slots=2)
            )
            nodes.append(
                await testbed.add_node(net, stack, anchor.url, root, i, seed=seed, executor=executor)
            )
        liars = {n.node_id for n in nodes[:LIARS]}
        with net.on_host(net.add_host(testbed.CLIENT_IP)):
            client = await stack.enter_async_context(
                AsyncClient(anchor.url, KeyPair.from_seed(f"{seed}/lessee".encode()), rng=random.Random(seed))
            )
            await client.deploy(write_deterministic(root))
            for node in nodes:
                with net.on_host(node.config.host):
                    await node.announce()
            assert len(await client.nodes(refresh=True)) == NODES
            invoker = ReplicatedInvoker(client, quorum=2, max_replicas=5, adaptive=True)
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(i: int) -> tuple[int, int, frozenset[str], str]:
                async with gate:
                    done = await invoker.invoke("echo", {"i": i})
                assert done.outcome.value == {"echo": {"i": i}}, (i, done)
                return i, done.replicas, done.dissenting, done.outcome.node_id

            results = await asyncio.gather(*(one(i) for i in range(CALLS)))
            query = "&".join(f"node={n.node_id}" for n in nodes)
            reputations = await rpc.call(
                client.session, "GET", f"{anchor.url}/v1/reputation?{query}", ReputationList, timeout_s=10
            )
        return {"results": results, "liars": liars, "reputations": reputations.nodes}


def _run(tmp_path: Path, seed: int, name: str) -> dict[str, object]:
    root = tmp_path / name
    root.mkdir()

    async def main(net: sim.InMemoryNetwork) -> dict[str, object]:
        return await _network(net, root, seed)

    return sim.run(main, seed=seed)


def test_adaptive_replication_on_12_simulated_nodes_with_3_liars(tmp_path: Path) -> None:
    run = _run(tmp_path, seed=21, name="a")
    results = run["results"]
    liars = run["liars"]
    assert isinstance(results, list) and isinstance(liars, set)
    assert len(results) == CALLS
    assert not any(node in liars for _, _, _, node in results)  # no liar's answer was ever returned
    caught = set().union(*(dissenting for _, _, dissenting, _ in results))
    assert caught == liars  # every liar was outvoted at least once, and only liars were
    by_node = {r.node_id: r for r in run["reputations"]}  # type: ignore[attr-defined]
    for node_id, rep in by_node.items():
        if node_id in liars:
            assert rep.agreements == 0 and rep.disagreements >= 1 and rep.trust_probability == 0.0
        else:
            assert rep.disagreements == 0
    trusted = [r for n, r in by_node.items() if n not in liars and r.trust_probability > 0]
    assert trusted  # some honest nodes earned the right to run alone
    first, last = results[:50], results[-50:]
    # Verification got cheaper as honest records grew (seed 21: 116 replicas for the first 50 calls, 86
    # for the last 50; the liars, a quarter of the nodes, are never trusted alone).
    assert sum(r for _, r, _, _ in last) <= 0.85 * sum(r for _, r, _, _ in first)

    again = _run(tmp_path, seed=21, name="b")
    digest = hashlib.sha256(repr(sorted(results)).encode()).hexdigest()
    assert digest == hashlib.sha256(repr(sorted(again["results"])).encode()).hexdigest(), "replay seed=21"  # type: ignore[call-overload]

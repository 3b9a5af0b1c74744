"""Faults with the real node code (issue #6): kill 30% of the nodes mid-run and drain another 10%.

A paying network on the simulator (`p2pfaas.sim`): the real anchor (SQLite ledger), real node daemons
(router, signed gossip, work pulling, vouchers, signed receipts sent to the anchor in batches) and
real clients with wallets; only run time is modelled (ModelExecutor). Node sizes and arrivals as in
`bench_placement_real.py`, at `--load` (default 50%: the survivors' capacity must carry it) of the
starting capacity. Halfway through the arrivals, 30% of the nodes crash at once (their hosts vanish:
what they ran and had not yet sent to the anchor is lost, as on a real crash) and another 10% start
draining (as on SIGTERM) and vanish once drained.

Counted afterwards: invocations the clients started (accepted) and completed; executions (the models'
count: a crash makes some invocations run twice, once on the crashed node or the node it had
forwarded to, once where the client's retry under the same id landed); the anchor's settlements: how
many receipts it paid, for how many distinct ids (at most one per id is the ledger's rule: a second
receipt for an id is refused), whether every answer a live node gave with a price was paid (to it,
or to the other node that ran it too and whose receipt came first; a run so short that it is priced
0 sends no receipt), and the ledger's own audit (books balance). Prints a table; asserts nothing.

Run: .venv/bin/python -m bench.bench_placement_faults [--nodes 200] [--duration 10] [--policy P ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.bench_placement_real import (
    MEAN_RUN_S,
    add_clients,
    add_nodes,
    parse_sizes,
    poisson_arrivals,
    settle,
)
from p2pfaas import sim
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.client import AsyncClient
from p2pfaas.client.account import AccountClient
from p2pfaas.client.wallet import Wallet
from p2pfaas.db import open_database
from p2pfaas.db.schema import settlements
from p2pfaas.errors import P2PFaaSError
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.placement.policy import POLICIES
from p2pfaas.sim import testbed

CRASH_SHARE = 0.3
DRAIN_SHARE = 0.1


async def _scenario(
    net: sim.InMemoryNetwork,
    root: Path,
    *,
    nodes: int,
    duration_s: float,
    load: float,
    policy: str,
    seed: int,
    sizes: tuple[int, ...],
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    settings = AnchorSettings(hasher=PasswordHasher(log2_n=10))
    async with contextlib.AsyncExitStack() as stack:
        anchor = await testbed.add_anchor(net, stack, root, settings=settings)
        daemons, executors, slots_total = await add_nodes(
            net, stack, root, anchor.url, count=nodes, sizes=sizes, seed=seed, rng=rng,
            placement=policy, price_per_cpu_s_micro=100_000,
        )  # fmt: skip
        for node in daemons:
            with net.on_host(node.config.host):
                await node.payments.ready()
        lessee = KeyPair.from_seed(b"bench lessee")
        account_ip = net.add_host("10.2.1.1")
        with net.on_host(account_ip):
            account = await stack.enter_async_context(AccountClient(anchor.url))
            await account.signup("lessee", "a long enough password", role="lessee")
            await account.claim_key(lessee, kind="lessee")
            account_id = (await account.balances()).accounts[0].account_id
        async with open_database(f"sqlite+aiosqlite:///{root / 'anchor.db'}") as db:  # operator's grant
            await LedgerStore(db).grant(ref="bench", account_id=account_id, amount_micro=10**13, now=0.0)
        rate = load * slots_total / MEAN_RUN_S
        clients = await add_clients(
            net, stack, root, anchor.url, lessee, rate=rate, seed=seed,
            wallet=lambda wallet_rng: Wallet(
                lessee, account.voucher, budget_micro=10**9, rng=wallet_rng,
                max_price_per_cpu_s_micro=10**6,  # over these nodes' price (100,000 per CPU-second)
            ),
        )  # fmt: skip
        await settle(net, daemons)

        victims = rng.sample(range(nodes), int((CRASH_SHARE + DRAIN_SHARE) * nodes))
        crashed = set(victims[: int(CRASH_SHARE * nodes)])
        draining = set(victims[int(CRASH_SHARE * nodes) :])
        answered: dict[str, str] = {}  # invocation id -> node id that answered
        free: set[str] = set()  # answered with a receipt of price 0 (a very short run): nothing to pay
        lost: list[str] = []

        async def one(i: int, client: AsyncClient) -> None:
            try:
                outcome = await client.invoke("echo", i)
            except P2PFaaSError as exc:
                lost.append(f"{i}: {exc}")
                return
            assert outcome.value == {"echo": i}
            answered[outcome.invocation_id] = outcome.node_id
            if outcome.price_micro == 0:
                free.add(outcome.invocation_id)

        async def drain_and_leave(node: NodeDaemon) -> None:
            with net.on_host(node.config.host):
                node.placement.request_drain()
                await node.stopped()  # drained: the daemon would exit now
                await node.payments.sender.flush()
                await node.payments.sender.drained()
            net.crash(node.config.host)

        fault_at = loop.time() + duration_s / 2
        leaving: list[asyncio.Future[None]] = []

        def faults_at_half_time() -> None:
            if not leaving and loop.time() >= fault_at:
                for n in crashed:
                    net.crash(daemons[n].config.host)
                leaving.extend(asyncio.ensure_future(drain_and_leave(daemons[n])) for n in draining)

        wall = time.perf_counter()
        i = await poisson_arrivals(
            net, rng, clients, rate=rate, duration_s=duration_s, start=one, tick=faults_at_half_time
        )
        await asyncio.gather(*leaving)
        for n, node in enumerate(daemons):  # the survivors' receipts reach the anchor
            if n not in crashed and n not in draining:
                with net.on_host(node.config.host):
                    await node.payments.sender.flush()
                    await node.payments.sender.drained()
        wall = time.perf_counter() - wall
        crashed_ids = {daemons[n].node_id for n in crashed}

    async with open_database(f"sqlite+aiosqlite:///{root / 'anchor.db'}") as db:
        problems = await audit(db)

        async def read(connection: AsyncConnection) -> dict[str, str]:
            rows = await connection.execute(sa.select(settlements.c.invocation_id, settlements.c.node_id))
            return {str(inv): str(node) for inv, node in rows}

        settled_rows = await db.run(
            lambda c: c.scalar(sa.select(sa.func.count()).select_from(settlements)), what="count", write=False
        )
        paid = await db.run(read, what="read", write=False)
    live_answers = {inv: by for inv, by in answered.items() if by not in crashed_ids and inv not in free}
    for reason in lost[:5]:
        print(f"lost: {reason}", file=sys.stderr)
    for inv in [inv for inv in live_answers if inv not in paid][:5]:
        print(f"unpaid: {inv} answered by {live_answers[inv][:12]}", file=sys.stderr)
    return {
        "accepted": float(i),
        "completed": float(len(answered)),
        "free": float(len(free)),
        "lost": float(len(lost)),
        "executions": float(sum(e.invocations for e in executors)),
        "settled": float(settled_rows or 0),
        "settled_ids": float(len(paid)),
        "unpaid_live": float(sum(1 for inv in live_answers if inv not in paid)),
        "paid_other": float(sum(1 for inv, by in live_answers.items() if paid.get(inv, by) != by)),
        "audit": float(len(problems)),
        "drained": float(sum(1 for n in draining if daemons[n].placement.router.draining)),
        "draining": float(len(draining)),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0, help="virtual seconds of arrivals")
    parser.add_argument("--load", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sizes", type=parse_sizes, default=(1, 2, 4, 8, 16), help="slots per node, drawn uniformly"
    )
    parser.add_argument("--policy", action="append", choices=list(POLICIES), help="default: ours")
    args = parser.parse_args()
    # Survivors retrying the anchor or gossip with crashed hosts would log thousands of warnings.
    logging.getLogger("p2pfaas").setLevel(logging.ERROR)
    logging.getLogger("p2pfaas.node.payments.receipts").setLevel(logging.WARNING)  # refusals to pay: keep
    print(
        f"{args.nodes} real nodes of {','.join(map(str, args.sizes))} slots, paying, load {args.load:.0%}, "
        f"{args.duration:g} virtual s of arrivals; at half time {CRASH_SHARE:.0%} crash and "
        f"{DRAIN_SHARE:.0%} drain; seed {args.seed}\n"
    )
    print(
        "| policy | accepted | completed | lost | executions | free (price 0) | receipts paid "
        "| distinct ids paid | live answers unpaid | paid to the other runner | audit problems "
        "| drained & left | wall s |"
    )
    print("|---|" + "---:|" * 12)
    for policy in args.policy or ["ours"]:
        with tempfile.TemporaryDirectory(prefix="p2pbf-") as tmp:

            async def run(net: sim.InMemoryNetwork, policy: str = policy, tmp: str = tmp) -> dict[str, float]:
                return await _scenario(
                    net, Path(tmp), nodes=args.nodes, duration_s=args.duration, load=args.load,
                    policy=policy, seed=args.seed, sizes=args.sizes,
                )  # fmt: skip

            r = sim.run(run, seed=args.seed)
        cells = [r[k] for k in ("accepted", "completed", "lost", "executions", "free", "settled")]
        cells += [r[k] for k in ("settled_ids", "unpaid_live", "paid_other", "audit")]
        drained = f"{r['drained']:.0f}/{r['draining']:.0f}"
        print(f"| {policy} | " + " | ".join(f"{c:.0f}" for c in cells) + f" | {drained} | {r['wall']:.0f} |")


if __name__ == "__main__":
    main()

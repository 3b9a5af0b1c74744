"""Receipts settled per second on MariaDB: batched against one by one, in the same run (issue #5).

Sets up a ledger in the MySQL/MariaDB test database (emptied first, under the tests' lock):
lessees, vouchers with ample budgets, and signed receipts from several nodes. Then it settles
fresh receipts along each path, with `--senders` concurrent senders (as several nodes would):

- one by one: `Settler.settle` with one receipt per transaction (the baseline);
- batched: `Settler.settle` with `--batch` receipts per transaction;
- batched over HTTP: signed `ReceiptBatch`es POSTed to the anchor's `/v1/receipts` on loopback,
  which also decodes the batch, verifies its signature and each receipt's spend ticket (the
  whole anchor-side cost).

It prints receipts/s, per-transaction latency percentiles and the ratio to the baseline, checks
the ledger's invariants afterwards (`audit`), and asserts no speed. Wall time is
`time.perf_counter`, which benchmarks may read (library code may not).

    .venv/bin/python -m bench.bench_settle [--receipts 20000] [--batch 512] [--senders 4]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from p2pfaas import signing
from p2pfaas.anchor import ledger_api
from p2pfaas.channels import sign_channel
from p2pfaas.db import Database, open_database
from p2pfaas.db.testing import exclusive_mysql_database
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind, FeePolicy
from p2pfaas.ledger.settlement import Settler, claim_of
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.ledger.wire import BatchResult
from p2pfaas.messages import Receipt, ReceiptBatch, Voucher
from p2pfaas.rpc import call, error_middleware
from p2pfaas.tickets import receipt_ticket_problem, sign_ticket

DEFAULT_URL = "mysql+aiomysql://p2pfaas:p2pfaas@127.0.0.1:3306/p2pfaas_test"
T0 = 1_700_000_000.0
DIGEST = "5e" * 32
VOUCHERS = 64
NODES = 8


def keys(seed: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(seed.encode()).digest())


@dataclass
class Run:
    name: str
    receipts: int
    seconds: float
    latencies_s: list[float]

    @property
    def rate(self) -> float:
        return self.receipts / self.seconds


async def setup_ledger(db: Database, lessee: KeyPair, anchor: KeyPair) -> None:
    store = LedgerStore(db)
    account = await store.user_account(1, AccountKind.LESSEE, now=T0)
    await store.grant(ref="bench", account_id=account, amount_micro=10**15, now=T0)
    for v in range(VOUCHERS):
        voucher = Voucher(f"bench-{v}", lessee.public.raw, 10**12, T0 + 10**7, b"", b"")
        await store.open_voucher(
            signing.sign(voucher, anchor), lessee_account_id=account, owner_user_id=1, now=T0
        )


def make_receipts(prefix: str, count: int, lessee: KeyPair, nodes: Sequence[KeyPair]) -> list[list[Receipt]]:
    """`count` signed receipts, split by node (each node signs its own), each with its lessee's
    spend ticket (the anchor checks one per receipt over HTTP; `Settler.settle` trusts its input)."""
    by_node: list[list[Receipt]] = [[] for _ in nodes]
    for n in range(count):
        k = n % len(nodes)
        invocation_id, voucher_id = f"{prefix}-{n}", f"bench-{n % VOUCHERS}"
        ran = hashlib.sha256(f"request {n}".encode()).digest()
        unsigned = Receipt(
            invocation_id, DIGEST, lessee.public.raw, voucher_id, True, 20, 30, 25,
            100 + n % 50, hashlib.sha256(str(n).encode()).digest(), T0 + 1, b"", b"",
            request_sha256=ran, ticket=sign_ticket(
                invocation_id, voucher_id, ran, lessee, payee=nodes[k].key_id, max_price_micro=1_000
            ),
        )  # fmt: skip
        by_node[k].append(signing.sign(unsigned, nodes[k]))
    return by_node


async def timed(name: str, jobs: list[Callable[[], Awaitable[int]]], senders: int) -> Run:
    """Run `jobs` (each settles some receipts and returns how many) on `senders` concurrent tasks."""
    latencies: list[float] = []
    queue = list(reversed(jobs))
    done = 0

    async def sender() -> None:
        nonlocal done
        while queue:
            job = queue.pop()
            start = time.perf_counter()
            settled = await job()  # not `done += await ...`: that reads `done` before awaiting
            done += settled
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(senders):
            tasks.create_task(sender())
    return Run(name, done, time.perf_counter() - start, latencies)


def settle_jobs(
    settler: Settler, by_node: list[list[Receipt]], nodes: Sequence[KeyPair], batch: int
) -> list[Callable[[], Awaitable[int]]]:
    jobs: list[Callable[[], Awaitable[int]]] = []
    for node, receipts in zip(nodes, by_node, strict=True):
        for start in range(0, len(receipts), batch):
            chunk = [claim_of(r) for r in receipts[start : start + batch]]

            async def job(node_id: str = node.key_id, chunk: list = chunk) -> int:  # type: ignore[type-arg]
                result = await settler.settle(node_id, chunk, now=T0 + 2)
                assert len(result.paid) == len(chunk), result.refused
                return len(chunk)

            jobs.append(job)
    return jobs


def http_jobs(
    session: aiohttp.ClientSession,
    url: str,
    by_node: list[list[Receipt]],
    nodes: Sequence[KeyPair],
    batch: int,
    lessee: KeyPair,
) -> list[Callable[[], Awaitable[int]]]:
    jobs: list[Callable[[], Awaitable[int]]] = []
    for node, receipts in zip(nodes, by_node, strict=True):
        # The lessee received every one of these results: its channel tickets to this node cover
        # them all (`p2pfaas.channels`); each batch carries them, as a node's sender does.
        totals: dict[str, int] = {}
        for r in receipts:
            totals[r.voucher_id] = totals.get(r.voucher_id, 0) + r.price_micro
        channels = tuple(
            sign_channel(voucher_id, node.key_id, seq=1, total_micro=total, keys=lessee)
            for voucher_id, total in sorted(totals.items())
        )
        for start in range(0, len(receipts), batch):
            chunk = tuple(receipts[start : start + batch])
            mine = tuple(t for t in channels if any(r.voucher_id == t.voucher_id for r in chunk))
            signed = signing.sign(ReceiptBatch(chunk, b"", b"", channels=mine), node)

            async def job(signed: ReceiptBatch = signed) -> int:
                result = await call(session, "POST", f"{url}/v1/receipts", BatchResult, signed, timeout_s=60)
                assert len(result.paid) == len(signed.receipts), result.refused
                return len(result.paid)

            jobs.append(job)
    return jobs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    lessee, anchor = keys("bench lessee"), keys("bench anchor")
    nodes = [keys(f"bench node {k}") for k in range(NODES)]
    per_tx = {"one by one": 1, "batched": args.batch, "batched over HTTP": args.batch}
    counts = {"one by one": args.one_by_one, "batched": args.receipts, "batched over HTTP": args.receipts}
    print(f"signing {args.one_by_one + 2 * args.receipts} receipts ...", flush=True)
    receipts = {name: make_receipts(name, counts[name], lessee, nodes) for name in per_tx}
    start = time.perf_counter()
    for r in receipts["batched"][0][:1000]:
        signing.verify(r)
    verify_us = (time.perf_counter() - start) / 1000 * 1e6
    start = time.perf_counter()
    for r in receipts["batched"][0][:1000]:
        assert receipt_ticket_problem(r) is None
    ticket_us = (time.perf_counter() - start) / 1000 * 1e6

    async with exclusive_mysql_database(args.url), open_database(args.url) as db:
        await setup_ledger(db, lessee, anchor)
        settler = Settler(db, fees=FeePolicy())
        app = web.Application(middlewares=[error_middleware], client_max_size=64 * 1024 * 1024)
        ledger_api.setup(app, db)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        runs: list[Run] = []
        try:
            async with aiohttp.ClientSession() as session:
                for name in per_tx:
                    if name == "batched over HTTP":
                        jobs = http_jobs(
                            session, f"http://127.0.0.1:{port}", receipts[name], nodes, per_tx[name], lessee
                        )
                    else:
                        jobs = settle_jobs(settler, receipts[name], nodes, per_tx[name])
                    print(f"{name}: {counts[name]} receipts ...", flush=True)
                    runs.append(await timed(name, jobs, args.senders))
        finally:
            await runner.cleanup()
        problems = await audit(db)
        version = await db.run(
            lambda c: c.scalar(__import__("sqlalchemy").text("SELECT VERSION()")), what="version", write=False
        )

    baseline = runs[0].rate
    print()
    print(
        f"MariaDB {version}, {os.cpu_count()} CPUs, {args.senders} concurrent senders, "
        f"{VOUCHERS} vouchers, {NODES} nodes"
    )
    print(
        "| path | receipts/transaction | receipts | seconds | receipts/s "
        "| tx median ms | tx p99 ms | vs one by one |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        print(
            f"| {run.name} | {per_tx[run.name]} | {run.receipts} | {run.seconds:.2f} | {run.rate:,.0f} "
            f"| {statistics.median(run.latencies_s) * 1e3:.1f} "
            f"| {percentile(run.latencies_s, 0.99) * 1e3:.1f} "
            f"| {run.rate / baseline:.1f}x |"
        )
    per = "once per receipt, and once per batch, over HTTP"
    print(f"\nEd25519 verification of one receipt: {verify_us:.0f} us (CPU; {per})")
    print(f"checking one receipt's spend ticket: {ticket_us:.0f} us (CPU; once per receipt over HTTP)")
    print(f"ledger audit after the run: {'clean' if not problems else problems[:5]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("P2PFAAS_TEST_MYSQL_URL", DEFAULT_URL))
    parser.add_argument("--receipts", type=int, default=20_000)
    parser.add_argument("--one-by-one", type=int, default=2_000, help="receipts for the one-by-one baseline")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--senders", type=int, default=4)
    asyncio.run(main(parser.parse_args()))

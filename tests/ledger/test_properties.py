"""A stateful property test of the ledger (hypothesis), on SQLite and on a real MariaDB.

Random grants, vouchers, receipt batches (new, replayed, sent by another node, over budget, after
expiry), payouts and expiries run against the real store, beside a plain model of what the money
should be. After every step: the books balance (entries sum to zero, balances match entries), no
account but an external one is negative, no invocation is settled twice, no voucher is overspent
(`audit`), and every balance is what the model says.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import RetryPolicy, open_database
from p2pfaas.db.schema import accounts, entries, payouts, settlements, transfers, vouchers
from p2pfaas.db.testing import exclusive_mysql_database
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind, FeePolicy, PayoutState, ReceiptClaim, Refusal
from p2pfaas.ledger.postings import FEES_ACCOUNT, InsufficientFunds
from p2pfaas.ledger.settlement import DEFAULT_EXPIRY_SKEW_S, Settler, claim_of
from p2pfaas.ledger.store import LedgerStore
from tests.conftest import mysql_url_or_skip
from tests.ledger.conftest import T0, keys, receipt, voucher

T = TypeVar("T")
FEES = FeePolicy(fee_ppm=100_000)
GRACE_S = 60.0
LESSEES = [keys("prop lessee 0"), keys("prop lessee 1")]
NODES = [keys("prop node 0"), keys("prop node 1"), keys("prop node 2")]
ANCHOR = keys("prop anchor")
FAST = RetryPolicy(attempts=20, base_delay_s=0.001, max_delay_s=0.05)


@dataclass
class VoucherModel:
    voucher_id: str
    lessee: int
    budget: int
    expires_at: float
    remaining: int
    open: bool = True


@dataclass
class Model:
    lessee: list[int] = field(default_factory=lambda: [0, 0])
    node: list[int] = field(default_factory=lambda: [0, 0, 0])
    fees: int = 0
    vouchers: list[VoucherModel] = field(default_factory=list)
    settled: set[str] = field(default_factory=set)
    pending_payouts: list[tuple[str, int, int]] = field(default_factory=list)  # (id, node, amount)


class LedgerMachine(RuleBasedStateMachine):
    """Drives one fresh ledger per example. `url` is None for SQLite (a new file per example)."""

    url: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.tmp: str | None = None
        if self.url is None:
            self.tmp = tempfile.mkdtemp(prefix="ledger-prop-")
            self.db = self.run(open_database(f"sqlite+aiosqlite:///{Path(self.tmp) / 'l.db'}", retry=FAST))
        else:
            self.db = self.run(open_database(self.url, retry=FAST))
            self.run(self.db.run(_empty_ledger, what="empty the ledger"))
        self.store = LedgerStore(self.db)
        self.settler = Settler(self.db, fees=FEES)
        self.now = T0
        self.model = Model()
        self.lessee_accounts = [
            self.run(self.store.user_account(i + 1, AccountKind.LESSEE, now=T0)) for i in range(2)
        ]
        self.node_accounts = [self.run(self.settler.earning_account(n.key_id, now=T0)) for n in NODES]
        self.fees_account = self.run(self.store.open_account(FEES_ACCOUNT, AccountKind.ANCHOR, now=T0))
        self.batches: list[tuple[int, list[ReceiptClaim]]] = []
        self.counter = 0

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return self.runner.run(wrapped())

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.db.aclose())
        self.runner.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # --- rules ----------------------------------------------------------------------------------

    @rule(lessee=st.integers(0, 1), amount=st.integers(1, 5_000))
    def grant(self, lessee: int, amount: int) -> None:
        ref = self.fresh("g")
        assert self.run(
            self.store.grant(
                ref=ref, account_id=self.lessee_accounts[lessee], amount_micro=amount, now=self.now
            )
        )
        assert (
            self.run(
                self.store.grant(
                    ref=ref, account_id=self.lessee_accounts[lessee], amount_micro=amount, now=self.now
                )
            )
            is None
        )
        self.model.lessee[lessee] += amount

    @rule(lessee=st.integers(0, 1), budget=st.integers(1, 3_000), ttl_s=st.sampled_from([30.0, 300.0]))
    def open_voucher(self, lessee: int, budget: int, ttl_s: float) -> None:
        voucher_id = self.fresh("v")
        v = voucher(voucher_id, LESSEES[lessee], budget, expires_at=self.now + ttl_s, anchor=ANCHOR)
        try:
            self.run(
                self.store.open_voucher(
                    v, lessee_account_id=self.lessee_accounts[lessee], owner_user_id=lessee + 1, now=self.now
                )
            )
        except InsufficientFunds:
            assert self.model.lessee[lessee] < budget
            return
        assert self.model.lessee[lessee] >= budget
        self.model.lessee[lessee] -= budget
        self.model.vouchers.append(VoucherModel(voucher_id, lessee, budget, self.now + ttl_s, budget))

    @precondition(lambda self: self.model.vouchers)
    @rule(
        node=st.integers(0, 2),
        picks=st.lists(
            st.tuples(st.integers(0, 40), st.integers(0, 10**6), st.integers(0, 400)), min_size=1, max_size=8
        ),
        foreign_lessee=st.booleans(),
    )
    def settle(self, node: int, picks: list[tuple[int, int, int]], foreign_lessee: bool) -> None:
        claims = []
        for k, (n, which, price) in enumerate(picks):
            v = self.model.vouchers[which % len(self.model.vouchers)]
            lessee = LESSEES[1 - v.lessee] if foreign_lessee and k == 0 else LESSEES[v.lessee]
            signed = receipt(
                f"inv-{n}",
                node=NODES[node],
                lessee=lessee,
                voucher_id=v.voucher_id,
                price_micro=price,
                issued_at=self.now,
            )
            claims.append(claim_of(signed))
        self._settle(node, claims)
        self.batches.append((node, claims))

    @precondition(
        lambda self: self.model.settled and any(v.open and v.remaining >= 500 for v in self.model.vouchers)
    )
    @rule(
        node=st.integers(0, 2),
        fresh=st.integers(1, 4),
        old=st.lists(st.integers(0, 10**6), min_size=1, max_size=3),
    )
    def fresh_then_replays(self, node: int, fresh: int, old: list[int]) -> None:
        """New receipts first, then ones paid before: a batch whose first INSERT must be undone whole."""
        v = max((v for v in self.model.vouchers if v.open), key=lambda v: v.remaining)
        settled = sorted(self.model.settled)
        ids = [self.fresh("fresh-") for _ in range(fresh)] + [settled[k % len(settled)] for k in old]
        claims = [
            claim_of(
                receipt(
                    i,
                    node=NODES[node],
                    lessee=LESSEES[v.lessee],
                    voucher_id=v.voucher_id,
                    price_micro=20,
                    issued_at=self.now,
                )
            )
            for i in ids
        ]
        self._settle(node, claims)

    @precondition(lambda self: self.batches)
    @rule(which=st.integers(0, 10**6), node=st.integers(0, 2))
    def replay(self, which: int, node: int) -> None:
        _, claims = self.batches[which % len(self.batches)]
        done = self._settle(node, claims)
        assert done == ()  # a replayed batch, by its node or another, pays nothing more

    @rule(dt=st.sampled_from([5.0, 50.0, 500.0]))
    def advance_and_release(self, dt: float) -> None:
        self.now += dt
        closed = self.run(self.store.release_expired(now=self.now, grace_s=GRACE_S))
        expected = [v for v in self.model.vouchers if v.open and v.expires_at + GRACE_S <= self.now]
        assert sorted(closed) == sorted(v.voucher_id for v in expected)
        for v in expected:
            v.open = False
            self.model.lessee[v.lessee] += v.remaining
            v.remaining = 0

    @rule(node=st.integers(0, 2), amount=st.integers(1, 2_000))
    def request_payout(self, node: int, amount: int) -> None:
        payout_id = self.fresh("p")
        try:
            self.run(
                self.store.request_payout(
                    payout_id=payout_id,
                    account_id=self.node_accounts[node],
                    amount_micro=amount,
                    destination="d",
                    now=self.now,
                )
            )
        except InsufficientFunds:
            assert self.model.node[node] < amount
            return
        assert self.model.node[node] >= amount
        self.model.node[node] -= amount
        self.model.pending_payouts.append((payout_id, node, amount))

    @precondition(lambda self: self.model.pending_payouts)
    @rule(which=st.integers(0, 10**6), paid=st.booleans())
    def finish_payout(self, which: int, paid: bool) -> None:
        payout_id, node, amount = self.model.pending_payouts.pop(which % len(self.model.pending_payouts))
        state = PayoutState.PAID if paid else PayoutState.FAILED
        assert self.run(self.store.settle_payout(payout_id, state, now=self.now)).state == state
        if not paid:
            self.model.node[node] += amount

    # --- the model's verdict on a batch -------------------------------------------------------

    def _settle(self, node: int, claims: list[ReceiptClaim]) -> tuple[str, ...]:
        result = self.run(self.settler.settle(NODES[node].key_id, claims, now=self.now))
        by_id = {v.voucher_id: v for v in self.model.vouchers}
        paid: list[str] = []
        refused: dict[str, Refusal] = {}
        seen = set(self.model.settled)
        for claim in claims:
            v = by_id[claim.voucher_id]
            charge = FEES.charge_micro(claim.price_micro)
            if claim.invocation_id in seen:
                refused.setdefault(claim.invocation_id, Refusal.DUPLICATE)
            elif claim.lessee_key != LESSEES[v.lessee].public.raw:
                refused[claim.invocation_id] = Refusal.WRONG_LESSEE
            elif not v.open:
                refused[claim.invocation_id] = Refusal.VOUCHER_CLOSED
            elif claim.issued_at > v.expires_at + DEFAULT_EXPIRY_SKEW_S:
                refused[claim.invocation_id] = Refusal.AFTER_EXPIRY
            elif claim.price_micro <= 0:
                refused[claim.invocation_id] = Refusal.NO_PRICE
            elif charge > v.remaining:
                refused[claim.invocation_id] = Refusal.OVER_BUDGET
            else:
                v.remaining -= charge
                self.model.node[node] += claim.price_micro
                self.model.fees += charge - claim.price_micro
                paid.append(claim.invocation_id)
                seen.add(claim.invocation_id)
        self.model.settled |= set(paid)
        assert sorted(result.paid) == sorted(paid)
        assert result.refused == refused
        return result.paid

    # --- after every step ----------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        assert self.run(audit(self.db)) == []

    @invariant()
    def balances_match_the_model(self) -> None:
        async def read(connection: AsyncConnection) -> dict[int, int]:
            rows = await connection.execute(sa.select(accounts.c.account_id, accounts.c.balance_micro))
            return {int(a): int(b) for a, b in rows}

        balance = self.run(self.db.run(read, what="balances", write=False))
        assert [balance[a] for a in self.lessee_accounts] == self.model.lessee
        assert [balance[a] for a in self.node_accounts] == self.model.node
        assert balance[self.fees_account] == self.model.fees
        for v in self.model.vouchers:
            assert self.run(self.store.voucher_remaining(v.voucher_id)) == (
                v.remaining,
                "open" if v.open else "closed",
            )

        async def count(connection: AsyncConnection) -> int:
            return int(await connection.scalar(sa.select(sa.func.count()).select_from(settlements)) or 0)

        assert self.run(self.db.run(count, what="count", write=False)) == len(self.model.settled)


async def _empty_ledger(connection: AsyncConnection) -> None:
    for table in (entries, settlements, payouts, vouchers, transfers, accounts):
        await connection.execute(table.delete())


# No shrinking: each step is a database transaction, and shrinking a failure would take many
# minutes; the failing run's steps are printed as they were.
PROPERTY_SETTINGS = settings(
    max_examples=12,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


def test_ledger_properties_on_sqlite() -> None:
    LedgerMachine.url = None
    run_state_machine_as_test(LedgerMachine, settings=PROPERTY_SETTINGS)


@pytest.mark.mysql
def test_ledger_properties_on_mariadb() -> None:
    url = mysql_url_or_skip()
    with asyncio.Runner() as outer:
        lock = exclusive_mysql_database(url)
        outer.run(lock.__aenter__())
        try:
            LedgerMachine.url = url
            run_state_machine_as_test(LedgerMachine, settings=PROPERTY_SETTINGS)
        finally:
            LedgerMachine.url = None
            outer.run(lock.__aexit__(None, None, None))


class FeeFreeSettlerMachine(LedgerMachine):
    """A mutant: the store settles without the anchor's fee, the model still expects it."""

    def __init__(self) -> None:
        super().__init__()
        self.settler = Settler(self.db, fees=FeePolicy(fee_ppm=0))


def test_the_property_test_catches_a_wrong_ledger() -> None:
    FeeFreeSettlerMachine.url = None
    try:
        with pytest.raises(AssertionError):
            run_state_machine_as_test(
                FeeFreeSettlerMachine,
                settings=settings(
                    PROPERTY_SETTINGS,
                    max_examples=100,
                    derandomize=True,  # a fixed search: a planted bug must be found on every run
                    phases=[Phase.generate],
                    print_blob=False,
                ),
            )
    finally:
        FeeFreeSettlerMachine.url = None

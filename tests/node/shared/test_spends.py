"""Shared voucher spends: reservations, settling and releases per worker, never past a budget; two real
processes, and a killed one."""

from __future__ import annotations

import signal
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas.node.payments.spends import FORGET_AFTER_S, PaymentRequired, VoucherSpend
from p2pfaas.node.shared.invocations import WAYS
from p2pfaas.node.shared.segment import SharedHandle
from p2pfaas.node.shared.tables import SharedTables
from tests.node.shared.conftest import SPAWN, MakeTables, run_two


def test_voucher_totals_check_and_add_and_reclaim_long_expired_vouchers(make: MakeTables) -> None:
    spends = make(voucher_slots=16).spends  # one set of 16 ways
    assert spends.get("v0") is None
    assert spends.reserve("v0", budget_micro=100, expires_at=1000.0, cost_micro=60, worker=0, now=0.0) is None
    assert spends.reserve("v0", budget_micro=100, expires_at=1000.0, cost_micro=41, worker=1, now=0.0) == 40
    spends.release("v0", reserved_micro=10, worker=0)
    spends.release("unknown", reserved_micro=10, worker=0)  # ignored
    spends.restore("v0", budget_micro=100, expires_at=1000.0, charged_micro=5, now=0.0)
    assert spends.get("v0") == VoucherSpend(100, 1000.0, committed_micro=55, charged_micro=5)
    for n in range(1, 16):
        assert (
            spends.reserve(f"v{n}", budget_micro=10, expires_at=5000.0, cost_micro=1, worker=2, now=0.0)
            is None
        )
    with pytest.raises(PaymentRequired, match="voucher table is full") as full:
        spends.reserve("v16", budget_micro=10, expires_at=5000.0, cost_micro=1, worker=0, now=0.0)
    assert full.value.status == 402
    late = 1000.0 + FORGET_AFTER_S + 1  # v0 is long expired: its entry is taken, and starts empty
    assert spends.reserve("v16", budget_micro=10, expires_at=9000.0, cost_micro=1, worker=1, now=late) is None
    assert spends.get("v0") is None
    assert spends.get("v16") == VoucherSpend(10, 9000.0, committed_micro=1, charged_micro=0)
    assert spends.release_worker(0) == 0  # v0's 50 went with its entry
    assert spends.forget(now=5000.0 + FORGET_AFTER_S + 1) == 15
    assert spends.get("v16") is not None and spends.get("v1") is None
    assert spends.release_worker(2) == 0  # forgotten with their vouchers


def test_settling_moves_a_workers_reservation_to_charged_and_a_dead_workers_are_dropped(
    make: MakeTables,
) -> None:
    spends = make(workers=3).spends
    for worker, cost in ((0, 100), (1, 300), (1, 200), (2, 50)):
        assert (
            spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=cost, worker=worker, now=0.0)
            is None
        )
    spends.reserve("w", budget_micro=1000, expires_at=9e9, cost_micro=70, worker=1, now=0.0)
    spends.settle("v", reserved_micro=200, charge_micro=120, worker=1)  # ran cheaper than reserved
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 300 + 120 + 50, charged_micro=120)
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=431, worker=0, now=0.0) == 430
    assert spends.release_worker(1) == 300 + 70  # every voucher's column of worker 1
    assert spends.release_worker(1) == 0
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 120 + 50, charged_micro=120)
    assert spends.get("w") == VoucherSpend(1000, 9e9, committed_micro=0, charged_micro=0)
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=730, worker=1, now=0.0) is None
    spends.settle("v", reserved_micro=50, charge_micro=50, worker=2)  # the others' are untouched
    spends.release("v", reserved_micro=100, worker=0)
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=120 + 50 + 730, charged_micro=170)
    with pytest.raises(AssertionError):  # a worker settles only what it reserved itself
        spends.settle("v", reserved_micro=1, charge_micro=1, worker=2)
    with pytest.raises(AssertionError):
        spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=1, worker=3, now=0.0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reserve", "settle", "release", "release_worker"]),
            st.integers(0, 2),  # worker
            st.sampled_from(["v", "w"]),
            st.integers(0, 400),  # a cost, or a charge, or which reservation
        ),
        max_size=60,
    )
)
def test_spends_follow_a_model_and_never_pass_a_budget(ops: list[tuple[str, int, str, int]]) -> None:
    """Against a model: per voucher, what was charged and each worker's open reservations."""
    with tempfile.TemporaryDirectory() as spill:
        tables = SharedTables.create(workers=3, result_slots=WAYS, voucher_slots=16, spill_dir=Path(spill))
        try:
            spends = tables.spends
            charged = {"v": 0, "w": 0}
            holds: list[tuple[str, int, int]] = []  # (voucher, worker, reserved)
            for op, worker, voucher, amount in ops:
                mine = [hold for hold in holds if hold[1] == worker]
                if op == "reserve":
                    committed = charged[voucher] + sum(cost for v, _, cost in holds if v == voucher)
                    left = spends.reserve(
                        voucher, budget_micro=1000, expires_at=9e9, cost_micro=amount, worker=worker, now=0.0
                    )
                    assert left == (None if committed + amount <= 1000 else 1000 - committed)
                    if left is None:
                        holds.append((voucher, worker, amount))
                elif op == "release_worker":
                    assert spends.release_worker(worker) == sum(cost for _, _, cost in mine)
                    holds = [hold for hold in holds if hold[1] != worker]
                elif mine:
                    hold = mine[amount % len(mine)]
                    holds.remove(hold)
                    charge = min(amount, hold[2]) if op == "settle" else 0
                    spends.settle(hold[0], reserved_micro=hold[2], charge_micro=charge, worker=worker)
                    charged[hold[0]] += charge
                for v in ("v", "w"):
                    spend = spends.get(v)
                    reserved = sum(cost for held, _, cost in holds if held == v)
                    assert spend is None or (spend.charged_micro, spend.committed_micro) == (
                        charged[v],
                        charged[v] + reserved,
                    )
                    assert spend is None or spend.committed_micro <= spend.budget_micro
        finally:
            tables.close()
            tables.unlink()


def _reserve_until_refused(handle: SharedHandle, worker: int, start: Any, answers: Any) -> None:
    """In a spawned worker: reserve 7 on one voucher 200 times; how many were accepted."""
    try:
        tables = SharedTables.attach(handle)
        try:
            start.wait()
            accepted = sum(
                tables.spends.reserve(
                    "v", budget_micro=1000, expires_at=9e9, cost_micro=7, worker=worker, now=1.0
                )
                is None
                for _ in range(200)
            )
            answers.put((worker, accepted, []))
        finally:
            tables.close()
    except BaseException:
        answers.put((worker, 0, [traceback.format_exc()]))


def test_two_processes_reserving_on_one_voucher_never_pass_its_budget(make: MakeTables) -> None:
    tables = make()
    accepted = run_two(_reserve_until_refused, tables.handle)
    assert accepted[1] + accepted[2] == 1000 // 7
    spend = tables.spends.get("v")
    assert spend is not None and spend.committed_micro == 1000 // 7 * 7


def _reserve_then_hang(handle: SharedHandle, worker: int, answers: Any, never: Any) -> None:
    """In a spawned worker: charge 150 and hold 400 on voucher "v", then wait to be SIGKILLed."""
    try:
        tables = SharedTables.attach(handle)  # never closed: the process is killed
        spends = tables.spends
        for cost in (300, 200, 100):
            left = spends.reserve(
                "v", budget_micro=1000, expires_at=9e9, cost_micro=cost, worker=worker, now=1.0
            )
            assert left is None, left
        spends.settle("v", reserved_micro=200, charge_micro=150, worker=worker)  # one of them ran
        answers.put((worker, None, []))
    except BaseException:
        answers.put((worker, None, [traceback.format_exc()]))
        return
    never.wait()


def test_a_killed_workers_reservations_are_freed_and_its_charges_stay(make: MakeTables) -> None:
    tables = make(workers=3)
    spends = tables.spends
    spends.restore("v", budget_micro=1000, expires_at=9e9, charged_micro=100, now=1.0)  # the spend log's
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=50, worker=2, now=1.0) is None
    answers, never = SPAWN.Queue(), SPAWN.Event()
    process = SPAWN.Process(target=_reserve_then_hang, args=(tables.handle, 1, answers, never))
    process.start()
    try:
        _, _, problems = answers.get(timeout=120)  # guards against a hang, times nothing
        assert problems == [], problems
    finally:
        process.kill()
        process.join()
        answers.close()
    assert process.exitcode == -signal.SIGKILL
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 50 + 150 + 400, charged_micro=250)
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=301, worker=0, now=2.0) == 300
    assert spends.release_worker(1) == 400  # the primary saw it die
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 50 + 150, charged_micro=250)
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=700, worker=0, now=2.0) is None
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=1, worker=1, now=2.0) == 0
    spends.settle("v", reserved_micro=50, charge_micro=40, worker=2)  # the live sibling's is intact
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 150 + 40 + 700, charged_micro=290)

"""The segment's layout: every worker's column of every voucher entry, and the load board, have bytes
of their own."""

from __future__ import annotations

from p2pfaas.node.shared.loads import LoadRow
from tests.node.shared.conftest import MakeTables


def test_every_workers_column_and_the_load_board_have_bytes_of_their_own(make: MakeTables) -> None:
    tables = make(workers=3, voucher_slots=16)  # one set: every entry used
    spends, loads = tables.spends, tables.loads
    for n in range(16):
        for worker in range(3):
            cost = 100 * n + worker + 1
            assert (
                spends.reserve(
                    f"v{n}", budget_micro=10**6, expires_at=9e9, cost_micro=cost, worker=worker, now=0.0
                )
                is None
            )
    for worker in range(3):
        loads.write(worker, LoadRow(*[-1] * 6))
    assert loads.totals() == LoadRow(*[-3] * 6)
    for n in range(16):
        spend = spends.get(f"v{n}")
        assert spend is not None and spend.committed_micro == 300 * n + 6
    assert [spends.release_worker(worker) for worker in (2, 0, 1)] == [
        sum(100 * n + worker + 1 for n in range(16)) for worker in (2, 0, 1)
    ]
    assert loads.totals() == LoadRow(*[-3] * 6)

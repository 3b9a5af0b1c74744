"""The load board: each worker's row, and their sums."""

from __future__ import annotations

from p2pfaas.node.shared.loads import LoadRow
from tests.node.shared.conftest import MakeTables


def test_the_load_board_sums_the_workers_rows(make: MakeTables) -> None:
    loads = make(workers=3).loads
    assert loads.totals() == LoadRow()
    loads.write(0, LoadRow(slots=4, free_slots=1, queue_length=0, running=3, invocations=100))
    loads.write(2, LoadRow(slots=4, free_slots=0, queue_length=5, running=4, invocations=7))
    assert loads.row(2) == LoadRow(4, 0, 5, 4, 7)
    assert loads.row(1) == LoadRow()
    assert loads.totals() == LoadRow(8, 1, 5, 7, 107)
    assert loads.totals(exclude=0) == LoadRow(4, 0, 5, 4, 7)

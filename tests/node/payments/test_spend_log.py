"""`SpendLog`: a node's charges per voucher, one JSON line each; `load` sums them, skips a torn line,
forgets long-expired vouchers and rewrites the file compacted."""

from __future__ import annotations

import json
from pathlib import Path

from p2pfaas.node.payments.spend_log import SpendLog
from p2pfaas.node.payments.spends import FORGET_AFTER_S

T0 = 1_700_000_000.0


def test_load_sums_each_vouchers_charges(tmp_path: Path) -> None:
    log = SpendLog(tmp_path / "new" / "dir" / "voucher-spend.log")
    assert log.load(now=T0) == {}  # no file yet
    for charge in (10, 20, 30):
        log.append("a", budget_micro=100, expires_at=T0 + 60, charge_micro=charge)
    log.append("b", budget_micro=7, expires_at=T0 + 60, charge_micro=7)
    assert log.load(now=T0) == {"a": (100, T0 + 60, 60), "b": (7, T0 + 60, 7)}


def test_a_torn_line_is_skipped_and_the_file_is_compacted(tmp_path: Path) -> None:
    log = SpendLog(tmp_path / "voucher-spend.log")
    log.append("a", budget_micro=100, expires_at=T0, charge_micro=5)
    log.append("a", budget_micro=100, expires_at=T0, charge_micro=6)
    log.append("gone", budget_micro=9, expires_at=T0 - FORGET_AFTER_S - 1, charge_micro=9)
    with log.path.open("a") as file:
        file.write('{"v": "a", "b": 100, "e"')  # a crash mid-line
    assert log.load(now=T0) == {"a": (100, T0, 11)}
    lines = log.path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"v": "a", "b": 100, "e": T0, "c": 11}]
    log.append("a", budget_micro=100, expires_at=T0, charge_micro=1)  # appends after the compaction
    assert log.load(now=T0) == {"a": (100, T0, 12)}

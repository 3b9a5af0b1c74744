"""`account usage` and `node earnings` print the bill as an aligned table with a total, or as CSV."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from p2pfaas.cli.usage import cmd_usage
from p2pfaas.ledger.wire import UsageLine, UsageReport

REPORT = UsageReport(
    lines=(
        UsageLine("(channel rests)", 0, 0, 0, 220),
        UsageLine("a-function-with-a-name-longer-than-32-characters@1.0.0", 3, 30, 3 * 20 * 12, 3_300),
        UsageLine("hello@2", 1, 10, 20 * 12, 550),
    ),
    bought_micro=5_000,
    spent_micro=4_070,
    returned_micro=0,
    held_micro=930,
)


class _Client:
    async def usage(self, *, since: float, by: str) -> UsageReport:
        return REPORT


def _run(args: argparse.Namespace, work: Any) -> int:
    import asyncio

    result: int = asyncio.run(work(_Client()))
    return result


def _usage(capsys: pytest.CaptureFixture[str], *, as_csv: bool) -> tuple[list[str], str]:
    assert cmd_usage(argparse.Namespace(since="", by="function", csv=as_csv), _run) == 0
    out, err = capsys.readouterr()
    return out.splitlines(), err


def test_the_bill_is_a_table_with_every_key_whole_and_a_total(capsys: pytest.CaptureFixture[str]) -> None:
    rows, err = _usage(capsys, as_csv=False)
    assert [row.split() for row in rows] == [
        ["function", "calls", "CPU", "s", "GB", "s", "credits"],
        ["(channel", "rests)", "0", "0.000", "0.000000", "0.000220"],
        ["a-function-with-a-name-longer-than-32-characters@1.0.0", "3", "0.030", "0.000703", "0.003300"],
        ["hello@2", "1", "0.010", "0.000234", "0.000550"],
        ["total", "4", "0.004070"],
    ]
    assert len({len(row) for row in rows[1:]}) == 1  # numbers right-aligned: every line as long
    assert "\x1b" not in "".join(rows)
    assert err == "vouchers: bought 0.005000 = spent 0.004070 + returned 0.000000 + still held 0.000930\n"


def test_csv_has_the_same_cells_and_no_total(capsys: pytest.CaptureFixture[str]) -> None:
    rows, err = _usage(capsys, as_csv=True)
    assert rows == [
        "function,calls,cpu_s,gb_s,credits",
        "(channel rests),0,0.000,0.000000,0.000220",
        "a-function-with-a-name-longer-than-32-characters@1.0.0,3,0.030,0.000703,0.003300",
        "hello@2,1,0.010,0.000234,0.000550",
    ]
    assert err == ""

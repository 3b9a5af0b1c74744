"""The figures `p2pfaas top` shows, from scrapes (sans-I/O)."""

from __future__ import annotations

from p2pfaas.metrics.top import Scrape, function_rows, node_row, parse, quantile

TEXT = """\
p2pfaas_node_invocations_total{function="echo",outcome="ok"} %d
p2pfaas_node_invocations_total{function="boom",outcome="failed"} 1
p2pfaas_node_instance_starts_total{function="echo",kind="cold"} 1
p2pfaas_node_slots{state="total"} 4
p2pfaas_node_slots{state="busy"} 1
p2pfaas_node_queue_length 2
p2pfaas_node_warm_instances 3
p2pfaas_node_earned_micro_total 1500
p2pfaas_node_invocation_seconds_bucket{stage="total",le="0.001"} %d
p2pfaas_node_invocation_seconds_bucket{stage="total",le="0.01"} %d
p2pfaas_node_invocation_seconds_bucket{stage="total",le="+Inf"} %d
p2pfaas_node_invocation_seconds_bucket{stage="queue",le="+Inf"} 999
"""


def frame(calls: int, fast: int, mid: int, at: float) -> Scrape:
    return parse("http://n1", TEXT % (calls, fast, mid, calls + 1), at)


def test_a_node_row_is_rated_over_the_interval() -> None:
    before, after = frame(10, 5, 10, at=100.0), frame(30, 5, 30, at=102.0)
    row = node_row(before, after)
    assert (row.slots, row.busy, row.queue, row.warm, row.earned_micro) == (4, 1, 2, 3, 1500)
    assert row.per_s == 10.0  # 20 more ok calls in 2 s (the failed one counted once, in both)
    # The 20 calls of the interval all took 1-10 ms: the median is in that bucket, not the old fast one.
    assert row.p50_s is not None and 0.001 < row.p50_s <= 0.01
    alone = node_row(None, after)
    assert alone.per_s is None and alone.p50_s is not None and alone.p50_s <= 0.01


def test_an_unreachable_node_is_a_row_with_its_error() -> None:
    row = node_row(None, Scrape("http://gone", 1.0, {}, "connection refused"))
    assert row.error == "connection refused" and row.slots == 0


def test_functions_are_summed_over_nodes_busiest_first() -> None:
    one, two = frame(10, 1, 1, at=0.0), parse("http://n2", TEXT % (5, 1, 1, 6), 0.0)
    later = [frame(20, 1, 1, at=1.0), parse("http://n2", TEXT % (5, 1, 1, 6), 1.0)]
    rows = function_rows([one, two], later)
    assert [(r.name, r.calls, r.cold_starts, r.per_s) for r in rows] == [
        ("echo", 25, 2, 10.0),
        ("boom", 2, 0, 0.0),
    ]


def test_quantiles_interpolate_within_a_bucket() -> None:
    assert quantile(0.5, []) is None and quantile(0.5, [(1.0, 0.0)]) is None
    assert quantile(0.5, [(1.0, 0.0), (2.0, 10.0), (float("inf"), 10.0)]) == 1.5
    assert quantile(0.99, [(1.0, 1.0), (float("inf"), 100.0)]) == 1.0  # open-ended: its lower bound


def test_a_hostile_nodes_exposition_cannot_crash_top_or_drive_the_terminal() -> None:
    """Review: `top` scrapes every node the anchor lists, strangers' too. A sample without a
    function label, a bucket bound that is not a number, NaN values, or escape sequences in labels
    crashed it or reached the terminal through rich's markup."""
    from rich.console import Console

    from p2pfaas.cli.top import render

    text = (
        (
            'p2pfaas_node_invocations_total{outcome="ok"} 3\n'
            'p2pfaas_node_invocations_total{function="\\u001b]0;pwned\\u0007[bold]x",outcome="ok"} 2\n'
            'p2pfaas_node_invocation_seconds_bucket{stage="total",le="abc"} 1\n'
            'p2pfaas_node_slots{state="total"} NaN\n'
            "p2pfaas_node_earned_micro_total +Inf\n"
        )
        .replace("\\u001b", "\x1b")
        .replace("\\u0007", "\x07")
    )
    scrape = parse("http://n1/\x1b[2J", text, 1.0)
    row = node_row(None, scrape)
    assert row.slots == 0 and row.earned_micro == 0 and row.p50_s is None
    assert {f.name for f in function_rows([], [scrape])} == {"?", "\x1b]0;pwned\x07[bold]x"}
    console = Console(record=True, width=200, force_terminal=True, color_system=None)
    console.print(render([], [scrape, parse("http://n2", "not { an exposition", 1.0)]))
    shown = console.export_text()
    assert "\x1b" not in shown and "\x07" not in shown and "[bold]x" in shown and "\\x1b" in shown
    assert "unreachable: not the Prometheus text format" in shown

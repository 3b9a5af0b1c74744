"""Plain-text tables: aligned columns, nothing cut short, no escape codes, markup printed as it is."""

from __future__ import annotations

import io

from p2pfaas.cli.tables import print_table, render_table


def test_columns_are_as_wide_as_their_widest_cell_and_numbers_align_right() -> None:
    text = render_table(
        ("function", "calls", "credits"),
        [("hello@1", "3", "0.003300"), ("a-much-longer-function-name@12", "1000", "0.5")],
        align="lrr",
    )
    assert text.splitlines() == [
        "function                        calls   credits",
        "hello@1                             3  0.003300",
        "a-much-longer-function-name@12   1000       0.5",
    ]


def test_the_output_is_plain_text_without_trailing_spaces_or_markup() -> None:
    out = io.StringIO()
    print_table(("id", "name"), [("1", "[bold]mallory[/bold] :smile:"), ("22", "x")], align="r", file=out)
    assert out.getvalue() == "id  name\n 1  [bold]mallory[/bold] :smile:\n22  x\n"
    assert "\x1b" not in out.getvalue()


def test_an_empty_table_is_its_header() -> None:
    assert render_table(("day", "calls"), []) == "day  calls\n"

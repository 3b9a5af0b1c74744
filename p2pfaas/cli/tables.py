"""Aligned plain-text tables for the commands' output, laid out by `rich.table`.

`print_table(headers, rows, align="lrr")` prints a header line and a line per row, each column as
wide as its widest cell (nothing is cut short), text left-aligned and numbers right-aligned, two
spaces between columns. The output is plain whether or not stdout is a terminal: no borders, no
colour or other escape codes, no trailing spaces, and cells are never read as rich markup (an
account's name is printed as it is), so it pipes into grep, awk or a file unchanged. Commands
that want a spreadsheet write CSV themselves (`--csv`).

rich is imported when a table is printed, not when the command line starts (as in `top.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

__all__ = ["print_table", "render_table"]


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, align: str = "") -> str:
    """The table as text, a line per row after the header; `align` holds "l" or "r" per column
    (left by default)."""
    from rich.console import Console
    from rich.table import Table

    assert set(align) <= {"l", "r"} and len(align) <= len(headers), align
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="")
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if align[i : i + 1] == "r" else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console = Console(width=1_000_000, color_system=None, markup=False, emoji=False, highlight=False)
    with console.capture() as captured:
        console.print(table)
    return "".join(line.rstrip() + "\n" for line in captured.get().splitlines())


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, align: str = "", file: TextIO | None = None
) -> None:
    (file or sys.stdout).write(render_table(headers, rows, align=align))

"""`LogBook`, the lessee's record of what its calls printed (read by `p2pfaas fn logs`)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from p2pfaas.cli.main import main
from p2pfaas.client import logbook
from p2pfaas.client.logbook import LogBook, LogEntry
from p2pfaas.errors import LocalError
from tests.client.conftest import entry


def test_calls_are_kept_per_function_and_read_back_oldest_first(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    for n in range(3):
        book.record(entry(n))
    book.record(entry(9, function="other@1.0.0"))  # a version belongs to its function's file
    book.record(entry(10, logs=""))  # a call that printed nothing is not kept
    assert [e.invocation_id for e in book.entries("resize")] == ["inv-0", "inv-1", "inv-2"]
    assert book.entries("resize", invocation_id="inv-1") == [entry(1)]
    assert book.entries("other") == [entry(9, function="other@1.0.0")]
    with (tmp_path / "resize.jsonl").open("a") as file:
        file.write('{"torn": \n')  # a torn line is skipped, the rest still reads
    assert len(book.entries("resize")) == 3
    with pytest.raises(LocalError):
        book.path("../../etc/passwd")


def test_a_full_file_is_rotated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logbook, "MAX_FILE_BYTES", 1000)
    book = LogBook(tmp_path)
    for n in range(40):
        book.record(entry(n, logs="x" * 100))
    kept = book.entries("resize")
    assert kept[-1].invocation_id == "inv-39" and 1 < len(kept) < 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resize.jsonl", "resize.jsonl.1"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())


def test_follow_yields_calls_recorded_after_it_started(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    book.record(entry(0))
    followed = book.follow("resize", poll_s=0.01)
    got: list[LogEntry] = []

    def read_two() -> None:
        got.extend([next(followed), next(followed)])

    reader = threading.Thread(target=read_two, daemon=True)
    reader.start()
    book.record(entry(1))
    book.record(entry(2))
    reader.join(30)
    assert [e.invocation_id for e in got] == ["inv-1", "inv-2"]


def test_printed_output_cannot_drive_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of #16: a function's output (a stranger's bytes) went to the lessee's terminal raw,
    so it could clear the screen, set the title, or rewrite earlier lines with escape sequences."""
    monkeypatch.setenv("P2PFAAS_HOME", str(tmp_path))
    hostile = "ok\tdone\n\x1b[2J\x1b]0;pwned\x07\rfake line\x9b31m\x7f\n"
    LogBook(tmp_path / "logs").record(entry(0, logs=hostile))
    assert main(["fn", "logs", "resize"]) == 0
    out = capsys.readouterr().out
    assert "ok\tdone\n" in out and "\\x1b[2J\\x1b]0;pwned\\x07\\x0dfake line\\x9b31m\\x7f" in out
    assert not any(ch in out for ch in "\x1b\x07\r\x9b\x7f")
    assert logbook.terminal_safe("plain text, é and 日本\n") == "plain text, é and 日本\n"

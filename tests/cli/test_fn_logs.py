"""`p2pfaas fn logs` (`p2pfaas.cli.fn_logs`): the output this client kept, per function or per call."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfaas.cli.main import main
from p2pfaas.client.logbook import LogBook
from tests.client.conftest import entry


def test_fn_logs_prints_the_kept_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("P2PFAAS_HOME", str(tmp_path))
    book = LogBook(tmp_path / "logs")
    book.record(entry(0, logs="hello\n"))
    book.record(entry(1, logs="world\n"))
    assert main(["fn", "logs", "resize"]) == 0
    out = capsys.readouterr().out
    assert "inv-0" in out and "hello" in out and "inv-1" in out and "world" in out
    assert main(["fn", "logs", "resize", "--invocation", "inv-1"]) == 0
    assert "hello" not in capsys.readouterr().out
    assert main(["fn", "logs", "resize", "--invocation", "nope"]) == 1
    assert "no output kept for call nope" in capsys.readouterr().err

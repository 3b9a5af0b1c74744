"""The function in the shim (`p2pfaas.exec.runtime.function`): a call's result or error as an
answer, never a raise; a handler imported once, on the first request, its failure reported."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from p2pfaas.exec.runtime import function

from ..conftest import make_function


def _handler(value: Any) -> Any:
    if value == "raise":
        raise KeyError("missing")
    if value == "exit":
        sys.exit(2)
    if value == "nan":
        return float("nan")
    if value == "object":
        return object()
    return {"got": value}


def test_invoke_returns_json_of_the_result() -> None:
    header, body = function.invoke(_handler, b"[1, 2]", max_result_bytes=1024)
    assert header["ok"] is True and header["duration_s"] >= 0
    assert json.loads(body) == {"got": [1, 2]}


def test_invoke_reports_exception_with_the_functions_traceback() -> None:
    header, body = function.invoke(_handler, b'"raise"', max_result_bytes=1024)
    assert (header["ok"], header["error_type"], body) == (False, "KeyError", b"")
    assert "in _handler" in header["traceback"] and "KeyError: 'missing'" in header["traceback"]
    assert "in invoke" not in header["traceback"]  # the shim's own frame is cut off


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [(b'"exit"', "SystemExit"), (b'"nan"', "ValueError"), (b'"object"', "TypeError"),
     (b"{", "JSONDecodeError")],
)  # fmt: skip
def test_invoke_never_raises(payload: bytes, error_type: str) -> None:
    header, _ = function.invoke(_handler, payload, max_result_bytes=1024)
    assert (header["ok"], header["error_type"]) == (False, error_type)


def test_result_over_the_limit_is_an_error_not_a_huge_frame() -> None:
    header, body = function.invoke(_handler, b'"' + b"x" * 100 + b'"', max_result_bytes=50)
    assert (header["ok"], header["error_type"], body) == (False, "ResultTooLarge", b"")


@pytest.mark.parametrize(
    ("spec", "error_type"),
    [("handler", "ValueError"), ("nosuchmodule:main", "ModuleNotFoundError"),
     ("handler:missing", "AttributeError")],
)  # fmt: skip
def test_load_handler_reports_errors(tmp_path: Path, spec: str, error_type: str) -> None:
    make_function(tmp_path / "fn")
    handler, error = function.load_handler(tmp_path / "fn", spec)
    assert handler is None and error is not None and error["error_type"] == error_type


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ("m:f", True),
        ("a.b_c.d:_f1", True),
        ("m:f:g", False),
        ("1m:f", False),
        ("m.:f", False),
        ("é:f", False),
    ],
)
def test_handler_specs(spec: str, valid: bool) -> None:
    assert function._valid_handler(spec) is valid


COUNTING_SOURCE = """
with open("imports.log", "a") as log:
    log.write("imported\\n")

def main(request):
    return request
"""


def test_the_handler_is_imported_once_on_first_load_even_by_racing_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "fn_counting"
    code.mkdir()
    (code / "counting_handler.py").write_text(COUNTING_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "counting_handler", raising=False)
    fn = function.Function(code, "counting_handler:main")
    assert fn.handler is None and not (tmp_path / "imports.log").exists()  # nothing runs before load
    threads = [threading.Thread(target=fn.load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fn.load()
    assert fn.handler is not None and fn.handler(3) == 3 and fn.load_error is None
    assert (tmp_path / "imports.log").read_text() == "imported\n"
    sys.modules.pop("counting_handler", None)


def test_a_handler_that_fails_to_import_keeps_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_function(tmp_path / "fn", source="raise SystemExit(4)\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "handler", raising=False)
    fn = function.Function(tmp_path / "fn", "handler:main")
    fn.load()
    fn.load()
    assert fn.handler is None and fn.load_error is not None
    assert (fn.load_error["ok"], fn.load_error["error_type"]) == (False, "SystemExit")
    sys.modules.pop("handler", None)

"""The function in the shim: its handler imported from the code directory, and one call of it
turned into an answer's header and body. STANDARD LIBRARY ONLY (see `shim.py`).

A function's failures, import-time ones included, are answers, never the shim's own: what the
author's code raises (even `SystemExit`) becomes an error header with the author's traceback. What
this does not do: limit time or memory (the host and the container's cgroup do), or isolate
anything from the function, which runs in this very process.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import TracebackType

from .framing import PROTOCOL_VERSION
from .output import DEFAULT_MAX_LOG_BYTES, Output, calls_output

TYPE_CHECKING = False  # mypy takes this name as typing.TYPE_CHECKING; importing typing costs a cold start
if TYPE_CHECKING:
    from typing import Any

    from .framing import Header

    Handler = Callable[[Any], Any]

DEFAULT_MAX_RESULT_BYTES = 6 * 1024 * 1024
MAX_TRACEBACK_CHARS = 32_000
MAX_MESSAGE_CHARS = 4_000


def _valid_handler(spec: str) -> bool:
    """`module.sub:function`, each part a Python identifier starting with an ASCII letter or _."""
    module, _, function = spec.partition(":")
    return all(
        part.isidentifier() and (part[0].isascii() and (part[0].isalpha() or part[0] == "_"))
        for part in (*module.split("."), function)
    )


def _error_header(exc: BaseException, tb: TracebackType | None, duration_s: float) -> Header:
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return {
        "v": PROTOCOL_VERSION,
        "ok": False,
        "error_type": type(exc).__name__,
        "error_message": str(exc)[:MAX_MESSAGE_CHARS],
        # Keep the end: the innermost frames and the exception line are what the author needs.
        "traceback": text[-MAX_TRACEBACK_CHARS:],
        "duration_s": duration_s,
    }


def load_handler(code_dir: str | os.PathLike[str], spec: str) -> tuple[Handler | None, Header | None]:
    """Import `module:function` from `code_dir`: the handler, or the error header to answer with.

    A broken handler is the function author's error, so it is reported on every invocation
    rather than crashing the shim (which the host would take for a broken sandbox).
    """
    try:
        if not _valid_handler(spec):
            raise ValueError(f"handler must look like 'module:function', got {spec!r}")
        module_name, function_name = spec.split(":")
        sys.path.insert(0, os.fspath(code_dir))
        module = importlib.import_module(module_name)
        handler = getattr(module, function_name)
        if not callable(handler):
            raise TypeError(f"{spec} is not callable")
        return handler, None
    except BaseException as exc:  # the author's import-time code may raise anything, even SystemExit
        return None, _error_header(exc, exc.__traceback__, 0.0)


def invoke(handler: Handler, payload: bytes, *, max_result_bytes: int) -> tuple[Header, bytes]:
    """Run the handler on a JSON payload: the response header and body. Never raises Exception."""
    try:
        value = json.loads(payload) if payload else None
    except ValueError as exc:
        return _error_header(exc, exc.__traceback__, 0.0), b""
    started = time.perf_counter()
    try:
        result = handler(value)
    except BaseException as exc:  # sys.exit() or KeyboardInterrupt in a function must not end the shim
        duration_s = time.perf_counter() - started
        tb = exc.__traceback__
        # Skip this frame: the author's traceback starts at their handler.
        return _error_header(exc, tb.tb_next if tb and tb.tb_next else tb, duration_s), b""
    duration_s = time.perf_counter() - started
    try:
        body = json.dumps(result, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        return _error_header(exc, exc.__traceback__, duration_s), b""
    if len(body) > max_result_bytes:
        too_large = ValueError(f"result of {len(body)} bytes exceeds the limit of {max_result_bytes}")
        header = _error_header(too_large, None, duration_s)
        header["error_type"] = "ResultTooLarge"
        return header, b""
    header = {"v": PROTOCOL_VERSION, "ok": True, "error_type": "", "error_message": "", "traceback": ""}
    header["duration_s"] = duration_s
    return header, body


def invoke_capturing(
    handler: Handler, payload: bytes, *, max_result_bytes: int, max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
) -> tuple[Header, bytes, bytes]:
    """Run the handler on a JSON payload: the response header, body and what the call printed.
    Never raises Exception."""
    output = Output(max_log_bytes)
    calls_output.out = output
    try:
        header, body = invoke(handler, payload, max_result_bytes=max_result_bytes)
    finally:
        calls_output.out = None
    return header, body, output.encoded()


class Function:
    """The handler, imported on the first request rather than at startup.

    Until the host's first request nothing of the function runs in this process, only the shim:
    the host uses that window to seal the socket's directory (see `shim.main`), so the function's
    code, import-time code included, never sees a writable host directory. Thread-safe: with
    `--concurrency N` the first requests may arrive together.
    """

    def __init__(self, code_dir: str | os.PathLike[str], spec: str) -> None:
        self._code_dir = code_dir
        self._spec = spec
        self._lock = threading.Lock()
        self._loaded = False
        self.handler: Handler | None = None
        self.load_error: Header | None = None

    def load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self.handler, self.load_error = load_handler(self._code_dir, self._spec)
                self._loaded = True

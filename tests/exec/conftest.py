"""Fixtures for the execution tests: a test function, short work dirs, the runtime image."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pfaas.exec.base import FunctionSpec

# One handler with many behaviours, chosen by the payload's "op".
HANDLER_SOURCE = """
import os, socket, sys, time

calls = 0

def main(request):
    global calls
    calls += 1
    op = request.get("op") if isinstance(request, dict) else None
    if op == "raise":
        raise ValueError("bad input: " + str(request.get("x")))
    if op == "sleep":
        time.sleep(request["s"])
        return "slept"
    if op == "alloc":
        hoard = [bytearray(1 << 20) for _ in range(request["mb"])]
        return len(hoard)
    if op == "calls":
        return calls
    if op == "print":  # `times` lines on stdout, one on stderr
        for _ in range(request.get("times", 1)):
            print(request["text"])
        print("to stderr", file=sys.stderr)
        return "printed"
    if op == "exit":
        sys.exit(3)
    if op == "die":
        os._exit(5)
    if op == "ids":
        return [os.getuid(), os.getgid(), os.geteuid()]
    if op == "interfaces":
        return sorted(name for _, name in socket.if_nameindex())
    if op == "connect":
        try:
            socket.create_connection((request["host"], request["port"]), timeout=2).close()
        except OSError as exc:
            return {"error": type(exc).__name__}
        return "connected"
    if op == "write":
        try:
            with open(request["path"], "w") as f:
                f.write("x")
        except OSError as exc:
            return {"error": type(exc).__name__, "errno": exc.errno}
        return "written"
    if op == "big":
        return "x" * request["n"]
    return request
"""


def make_function(directory: Path, *, memory_mb: int = 128, source: str = HANDLER_SOURCE) -> FunctionSpec:
    """Write `source` as handler.py in `directory` and describe it as a function."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "handler.py").write_text(source)
    digest = hashlib.sha256(source.encode() + str(directory).encode()).hexdigest()
    return FunctionSpec(
        digest=digest, code_dir=directory, handler="handler:main", memory_mb=memory_mb, timeout_s=5.0
    )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A work dir with a short path: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="p2pf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def function(tmp_path: Path) -> FunctionSpec:
    return make_function(tmp_path / "fn")

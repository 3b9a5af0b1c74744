"""The shim's entry point (`p2pfaas.exec.runtime.shim`): its command line, and its files run by
path as one package that a function's own modules never meet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2pfaas.exec.runtime import RUNTIME_DIR, SHIM_FILES, shim
from p2pfaas.exec.shim_client import connect_when_ready

from ..conftest import make_function
from .conftest import start_shim


def test_the_fast_command_line_parser_agrees_with_argparse() -> None:
    argv = ["--socket", "/run/x.sock", "--code-dir", "/fn", "--handler", "pkg.mod:main", "--concurrency", "3"]
    fast = shim._parse_fast(argv)
    assert fast is not None and vars(fast) == vars(shim._parse_with_argparse(argv))
    assert fast.concurrency == 3 and fast.rlimit_as_mb == 0 and fast.handler == "pkg.mod:main"
    # Anything unusual goes to argparse, which explains and exits with status 2.
    for bad in (
        ["--handler"],
        ["--handler", "m:f", "--bogus", "1"],
        ["--handler", "m:f", "--concurrency", "0"],
    ):
        assert shim._parse_fast(bad) is None
        with pytest.raises(SystemExit) as caught:
            shim._parse_args(bad)
        assert caught.value.code == 2


# A function with modules named like the shim's own, which must be its own.
LOOKALIKE_SOURCE = """
import sys

import framing, watchdog

def main(request):
    return {
        "mine": [framing.MINE, watchdog.MINE],
        "shim": sorted(name for name in sys.modules if name.startswith("p2pfaas")),
        "path": sys.path,
    }
"""


async def test_run_by_path_the_shims_files_are_one_package_beside_the_functions_modules(
    tmp_path: Path, short_dir: Path
) -> None:
    make_function(tmp_path / "fn", source=LOOKALIKE_SOURCE)
    for name in ("framing", "watchdog"):
        (tmp_path / "fn" / f"{name}.py").write_text(f"MINE = {name!r}\n")
    process = await start_shim(tmp_path / "fn", short_dir / "s.sock")

    async def exited() -> str | None:
        return None if process.returncode is None else f"status {process.returncode}"

    try:
        connection = await connect_when_ready(
            short_dir / "s.sock", timeout_s=30, exit_reason=exited, check_every_s=0
        )
        result = await connection.invoke(b"{}", timeout_s=5)
        await connection.aclose()
    finally:
        process.kill()
        await process.wait()
    assert result.ok, result.traceback
    seen = json.loads(result.output)
    assert seen["mine"] == ["framing", "watchdog"]
    lazy = {"shim", "forwarder"}  # the entry point, and what only a function with egress loads
    modules = {f"p2pfaas_shim.{path.stem}" for path in SHIM_FILES if path.stem not in lazy}
    assert set(seen["shim"]) == {"p2pfaas_shim", *modules}  # never p2pfaas itself
    assert str(RUNTIME_DIR) not in seen["path"]

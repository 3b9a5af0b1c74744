"""Run the fuzz harnesses (`fuzz/targets.py`) under atheris.

    .venv/bin/python -m fuzz.run TARGET [--seconds 60]     one harness, libFuzzer's own output
    .venv/bin/python -m fuzz.run --all [--seconds 10]      each harness in its own process: a table

New inputs that reach new coverage go to a scratch directory (`--keep DIR` to keep them; the
checked-in seeds under `fuzz/corpus/` are read, never written). A crash (an exception other than
the harness's documented one, an assertion, a hang past `--timeout`, memory past 2 GiB) stops
that harness, keeps the input under `fuzz/crashes/`, and fails the run (exit 1): replay it with
`.venv/bin/python -m fuzz.run TARGET fuzz/crashes/<file>`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"


def fuzz_one(target: str, *, seconds: float, timeout_s: int, keep: Path | None, replay: list[str]) -> None:
    """In this process (it ends it): fuzz `target`, or replay the given inputs."""
    import atheris

    with atheris.instrument_imports(include=["p2pfaas", "fuzz", "tarfile", "zipfile", "tomllib", "msgpack"]):
        from fuzz.targets import ALLOWED, TARGETS

    harness, allowed = TARGETS[target], ALLOWED[target]

    def one_input(data: bytes) -> None:
        with contextlib.suppress(*allowed):
            harness(data)

    CRASHES.mkdir(exist_ok=True)
    scratch = keep or Path(tempfile.mkdtemp(prefix=f"p2pfuzz-{target}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    options = [
        f"-timeout={timeout_s}", "-rss_limit_mb=2048", "-print_final_stats=1", "-max_len=65536",
        f"-artifact_prefix={CRASHES}/{target}-",
    ]  # fmt: skip
    if replay:
        argv = [sys.argv[0], *options, *replay]
    else:
        argv = [
            sys.argv[0],
            *options,
            f"-max_total_time={max(1, int(seconds))}",
            str(scratch),
            str(CORPUS / target),
        ]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def fuzz_all(seconds: float, timeout_s: int) -> int:
    from fuzz.targets import TARGETS  # only the names: each harness runs in its own process

    print(f"fuzzing each harness for {seconds:g} s (atheris {_atheris_version()}, {os.cpu_count()} cores)")
    columns = ("executions", "exec/s", "coverage", "features", "corpus")
    print(f"{'harness':<16} " + " ".join(f"{c:>{max(len(c), 8)}}" for c in columns) + "  result")
    failed = 0
    for target in TARGETS:
        started = time.monotonic()
        command = [sys.executable, "-m", "fuzz.run", target, "--seconds", str(seconds)]
        done = subprocess.run(
            [*command, "--timeout", str(timeout_s)],
            capture_output=True, text=True, timeout=seconds * 3 + 120, cwd=HERE.parent,
        )  # fmt: skip
        output = done.stdout + done.stderr
        runs = _stat(output, "number_of_executed_units")
        cov, ft, corp = _last(output, "cov"), _last(output, "ft"), _last(output, "corp")
        rate = runs / max(time.monotonic() - started, 1e-9)
        result = "ok" if done.returncode == 0 else f"CRASH (exit {done.returncode}): {_crash_line(output)}"
        failed += done.returncode != 0
        print(f"{target:<16} {runs:>10} {rate:>8.0f} {cov:>8} {ft:>8} {corp:>8}  {result}")
        if done.returncode != 0:
            print(output[-3000:], file=sys.stderr)
    return 1 if failed else 0


def _stat(output: str, name: str) -> int:
    found = re.findall(rf"stat::{name}:\s*(\d+)", output)
    return int(found[-1]) if found else 0


def _last(output: str, field: str) -> str:
    found = re.findall(rf"\b{field}: (\d+)", output)
    return found[-1] if found else "-"


def _crash_line(output: str) -> str:
    for line in output.splitlines():
        if "Uncaught Python exception" in line or "ERROR: libFuzzer" in line or "Error" in line:
            return line.strip()[:160]
    return "see the output above"


def _atheris_version() -> str:
    from importlib.metadata import version

    return version("atheris")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", nargs="?", help="one harness (see fuzz/targets.py); or --all")
    parser.add_argument("inputs", nargs="*", help="replay these inputs instead of fuzzing")
    parser.add_argument("--all", action="store_true", help="every harness, each for --seconds")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--keep", type=Path, help="keep the new corpus inputs in this directory")
    args = parser.parse_args()
    if args.all:
        return fuzz_all(args.seconds, args.timeout)
    if not args.target:
        parser.error("name a harness, or --all")
    fuzz_one(args.target, seconds=args.seconds, timeout_s=args.timeout, keep=args.keep, replay=args.inputs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The fuzz harnesses (fuzz/): every seed passes its harness, and a bounded atheris run of every
harness finds no crash. `P2PFAAS_FUZZ_SECONDS` sets the time per harness (5 s here; the figures in
docs/fuzzing.md come from longer runs of the same command)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import ALLOWED, TARGETS

ROOT = Path(__file__).parents[2]
CORPUS = ROOT / "fuzz" / "corpus"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_passes_its_harness(target: str) -> None:
    seeds = sorted((CORPUS / target).iterdir())
    assert seeds, f"no seeds for {target}: run .venv/bin/python -m fuzz.seeds"
    for seed in seeds:
        TARGETS[target](seed.read_bytes())  # valid inputs: not even the documented error


def test_every_harness_documents_its_error() -> None:
    assert set(ALLOWED) == set(TARGETS)


def test_a_bounded_fuzz_run_of_every_harness_finds_nothing() -> None:
    seconds = float(os.environ.get("P2PFAAS_FUZZ_SECONDS", "5"))
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "--all", "--seconds", str(seconds)],
        cwd=ROOT, capture_output=True, text=True, timeout=len(TARGETS) * (seconds * 3 + 120),
    )  # fmt: skip
    table = done.stdout
    assert done.returncode == 0, table + done.stderr[-4000:]
    rows = [line.split() for line in table.splitlines()[2:] if line.strip()]
    assert {row[0] for row in rows} == set(TARGETS)
    assert all(row[-1] == "ok" and int(row[1]) > 0 for row in rows), table

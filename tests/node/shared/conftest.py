"""The kit of the shared tables' tests: tables made small and cleaned up, and two spawned workers."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pfaas.node.shared.invocations import Claim, ClaimKind
from p2pfaas.node.shared.segment import SharedHandle
from p2pfaas.node.shared.tables import SharedTables

NEW, RUNNING, DONE = Claim(ClaimKind.NEW), ClaimKind.RUNNING, ClaimKind.DONE
ALICE, BOB = b"alice key + digest", b"bob key + digest"
TTL_S = 600.0
SPAWN = multiprocessing.get_context("spawn")

MakeTables = Callable[..., SharedTables]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[MakeTables]:
    """SharedTables.create with small defaults; every segment made is closed and unlinked after."""
    made: list[SharedTables] = []

    def create(**options: Any) -> SharedTables:
        settings: dict[str, Any] = {
            "workers": 3,
            "result_slots": 64,
            "voucher_slots": 32,
            "result_ttl_s": TTL_S,
            "spill_dir": tmp_path / "spill",
        }
        made.append(SharedTables.create(**(settings | options)))
        return made[-1]

    yield create
    for tables in made:
        tables.close()
        tables.unlink()


def run_two(target: Callable[..., None], handle: SharedHandle) -> dict[int, Any]:
    start, answers = SPAWN.Barrier(2), SPAWN.Queue()
    processes = [SPAWN.Process(target=target, args=(handle, worker, start, answers)) for worker in (1, 2)]
    for process in processes:
        process.start()
    got = {}
    try:
        for _ in processes:
            worker, answer, problems = answers.get(timeout=120)  # guards against a hang, times nothing
            assert problems == [], problems
            got[worker] = answer
    finally:
        for process in processes:
            process.join()
        answers.close()
    assert [process.exitcode for process in processes] == [0, 0]
    return got

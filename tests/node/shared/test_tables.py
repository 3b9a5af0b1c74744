"""A node's cross-process tables: real shared memory, and real spawned processes where it matters."""

from __future__ import annotations

from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from p2pfaas.errors import ConfigError
from p2pfaas.node.shared.invocations import Claim
from p2pfaas.node.shared.tables import SharedTables
from tests.node.shared.conftest import ALICE, RUNNING, MakeTables


def test_attaching_leaves_the_segment_to_its_creators_resource_tracker(
    make: MakeTables, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[str] = []
    register = resource_tracker.register

    def spy(name: str, rtype: str) -> None:
        registered.append(rtype)
        register(name, rtype)

    monkeypatch.setattr(resource_tracker, "register", spy)
    tables = make()
    assert registered.count("shared_memory") == 1  # the creator's: its unlink withdraws it
    attached = SharedTables.attach(tables.handle)
    assert registered.count("shared_memory") == 1
    attached.invocations.claim("i", ALICE, worker=1, now=1.0)
    attached.close()
    assert tables.invocations.lookup("i", ALICE, now=1.0) == Claim(RUNNING, 1)


def test_sizes_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        SharedTables.create(workers=1, result_slots=12, spill_dir=tmp_path)
    with pytest.raises(ConfigError):
        SharedTables.create(workers=0, spill_dir=tmp_path)


# --- two processes --------------------------------------------------------------------------------

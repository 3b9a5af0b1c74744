"""The network lab's fixtures: a lab per test module, removed afterwards (also when a test fails).

Lab tests need root and iproute2/iptables; where those are missing they skip, unless
P2PFAAS_REQUIRE_LAB=1 (as CI sets), in which case they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pfaas.lab import Lab, LabSpec, netns, topology
from tests.conftest import require_or_skip


def lab_or_skip(spec: LabSpec, state_dir: Path) -> Lab:
    reason = netns.unavailable()
    if reason is not None:
        require_or_skip("P2PFAAS_REQUIRE_LAB", "the network lab", reason)
    topology.remove_stale(state_dir=state_dir)  # labs of a run that was killed
    return Lab.build(spec, owner_pid=os.getpid(), state_dir=state_dir)


@pytest.fixture(scope="session")
def lab_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(os.environ.get("P2PFAAS_LAB_STATE", topology.STATE_DIR))


@pytest.fixture(scope="module")
def small_lab(lab_state_dir: Path) -> Iterator[Lab]:
    """Two public hosts and two homes of two hosts each."""
    with lab_or_skip(LabSpec(public=2, homes=2, per_home=2), lab_state_dir) as lab:
        yield lab

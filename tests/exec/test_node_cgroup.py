"""The node's parent cgroup: all its containers together get the cores and memory lent, no more.

Two CPU burners in two containers (each allowed a whole core) run at once on a node lending half a
core: the kernel's quota on the parent holds their sum to half a core's worth of CPU time (the
parent's own counter says so, and that it throttled them), while each is still metered on its own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.metering import CGROUP_ROOT
from p2pfaas.exec.node_cgroup import prepare

from .conftest import make_function
from .test_metering import BURNER

pytestmark = pytest.mark.docker

BURN_S = 1.0


def _counter(path: Path, field: str = "") -> int:
    text = path.read_text()
    if not field:
        return int(text)
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith(field + " ")))


async def test_containers_share_the_cores_the_node_lends(
    runtime_image: str, short_dir: Path, tmp_path: Path
) -> None:
    executor = DockerExecutor(
        owner_id=f"test-{uuid.uuid4().hex[:12]}",
        work_dir=short_dir / "run",
        image=runtime_image,
        node_cpus=0.5,
        node_memory_mb=512,
    )
    await executor.start()
    assert executor.node_cgroup is not None, "this test needs a writable cgroup v1 tree (as root)"
    name = executor.node_cgroup.parent.strip("/")
    try:
        assert (CGROUP_ROOT / "cpu" / name / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert _counter(CGROUP_ROOT / "memory" / name / "memory.limit_in_bytes") == 512 << 20
        burners = [make_function(tmp_path / f"b{i}", memory_mb=64, source=BURNER) for i in range(2)]
        for fn in burners:  # start both containers; booting is not what this measures
            await executor.invoke(fn, json.dumps({"op": "none", "s": 0}).encode(), timeout_s=60)
        usage = CGROUP_ROOT / "cpuacct" / name / "cpuacct.usage"
        throttled_before = _counter(CGROUP_ROOT / "cpu" / name / "cpu.stat", "nr_throttled")
        used_before = _counter(usage)
        body = json.dumps({"op": "burn", "s": BURN_S}).encode()
        results = await asyncio.gather(*(executor.invoke(fn, body, timeout_s=60) for fn in burners))
        used_s = (_counter(usage) - used_before) / 1e9
        throttled = _counter(CGROUP_ROOT / "cpu" / name / "cpu.stat", "nr_throttled") - throttled_before
        wall_s = max(result.duration_s for result in results)
    finally:
        await executor.aclose()
    assert all(result.ok for result in results)
    # Both burned for BURN_S of wall time, but together got at most half a core (plus one period's slack).
    assert used_s <= 0.5 * wall_s + 0.1, (used_s, wall_s)
    assert sum(result.cpu_s for result in results) == pytest.approx(used_s, abs=0.05)  # metered each
    assert throttled > 0
    assert not (CGROUP_ROOT / "cpu" / name).exists()  # removed with the last container


def test_an_unwritable_tree_is_a_reason_not_an_error(tmp_path: Path) -> None:
    reason = prepare("p2pfaas-x", cpus=1.0, memory_mb=64, root=tmp_path / "missing")
    assert isinstance(reason, str) and "cannot set up the node's cgroup" in reason

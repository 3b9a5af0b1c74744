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
from typing import Any

import pytest

from p2pfaas.exec import node_cgroup
from p2pfaas.exec.container_config import LABEL_OWNER
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
    cgroup = executor.node_cgroup
    if cgroup is None and executor.client.info().get("CgroupDriver") != "cgroupfs":
        await executor.aclose()
        pytest.skip("the Docker engine uses the systemd cgroup driver: no node cgroup (a warning says so)")
    assert cgroup is not None, "this test needs a writable cgroup tree (as root)"
    name = cgroup.parent.strip("/")
    # Where the quota, the memory limit and the counters live, by cgroup version.
    if cgroup.version == 1:
        quota, memory_limit = CGROUP_ROOT / "cpu" / name / "cpu.cfs_quota_us", "memory/" + name
        usage, stat = (
            CGROUP_ROOT / "cpuacct" / name / "cpuacct.usage",
            CGROUP_ROOT / "cpu" / name / "cpu.stat",
        )
        expected_quota, memory_file, usage_ns = "50000", "memory.limit_in_bytes", 1
    else:
        quota, memory_limit = CGROUP_ROOT / name / "cpu.max", name
        usage = stat = CGROUP_ROOT / name / "cpu.stat"
        expected_quota, memory_file, usage_ns = "50000 100000", "memory.max", 1000
    counter_field = "usage_usec" if cgroup.version == 2 else ""
    try:
        assert quota.read_text().strip() == expected_quota
        assert _counter(CGROUP_ROOT / memory_limit / memory_file) == 512 << 20
        burners = [make_function(tmp_path / f"b{i}", memory_mb=64, source=BURNER) for i in range(2)]
        for fn in burners:  # start both containers; booting is not what this measures
            await executor.invoke(fn, json.dumps({"op": "none", "s": 0}).encode(), timeout_s=60)
        throttled_before = _counter(stat, "nr_throttled")
        used_before = _counter(usage, counter_field) * usage_ns
        body = json.dumps({"op": "burn", "s": BURN_S}).encode()
        results = await asyncio.gather(*(executor.invoke(fn, body, timeout_s=60) for fn in burners))
        used_s = (_counter(usage, counter_field) * usage_ns - used_before) / 1e9
        throttled = _counter(stat, "nr_throttled") - throttled_before
        wall_s = max(result.duration_s for result in results)
    finally:
        await executor.aclose()
    assert all(result.ok for result in results)
    # Both burned for BURN_S of wall time, but together got at most half a core (plus one period's slack).
    assert used_s <= 0.5 * wall_s + 0.1, (used_s, wall_s)
    assert sum(result.cpu_s for result in results) == pytest.approx(used_s, abs=0.05)  # metered each
    assert throttled > 0
    assert not quota.parent.exists()  # removed with the last container


def test_an_unwritable_tree_is_a_reason_not_an_error(tmp_path: Path) -> None:
    reason = prepare("p2pfaas-x", cpus=1.0, memory_mb=64, root=tmp_path / "missing")
    assert isinstance(reason, str) and "cannot set up the node's cgroup" in reason


async def test_without_a_node_cgroup_each_instance_gets_its_slots_part_of_the_cores(
    runtime_image: str, short_dir: Path, tmp_path: Path, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker's systemd cgroup driver (or no rights to the cgroup tree): no parent cgroup can hold
    the instances together, so each gets cores lent / slots, and all that may run at once fit."""
    monkeypatch.setattr(node_cgroup, "prepare", lambda *args, **kwargs: "simulated: no cgroup here")
    executor = DockerExecutor(
        owner_id=f"test-{uuid.uuid4().hex[:12]}",
        work_dir=short_dir / "run",
        image=runtime_image,
        node_cpus=1.5,
        node_memory_mb=512,
        node_slots=4,
    )
    await executor.start()
    try:
        assert executor.node_cgroup is None
        fn = make_function(tmp_path / "f", memory_mb=64)
        assert (await executor.invoke(fn, b"{}", timeout_s=60)).ok
        [container] = docker_client.containers.list(filters={"label": f"{LABEL_OWNER}={executor.owner_id}"})
        assert container.attrs["HostConfig"]["NanoCpus"] == int(1.5 / 4 * 1e9)
        assert container.attrs["HostConfig"]["CgroupParent"] == ""
    finally:
        await executor.aclose()

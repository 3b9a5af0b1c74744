"""One parent cgroup for all of a node's containers: the cores and memory its volunteer lends, as a
hard kernel limit that every instance shares (Docker's `cgroup_parent`).

Each container keeps its own limits from its manifest; the parent bounds their sum, so eight
concurrent instances under `--cpus 1.5` share 1.5 cores rather than take eight, and warm, running
and leaking instances together never hold more than `--memory`. Supported: Docker's cgroupfs driver
on cgroup v1 (`cpu.cfs_quota_us`, `memory.limit_in_bytes`) and v2 (`cpu.max`, `memory.max`).
Where the files cannot be written (the systemd driver, a rootless engine, no privileges) `prepare`
returns the reason instead, and the executor falls back to static limits: each instance gets the
cores lent divided by the node's slots (`DockerExecutor.instance_cpus`), and admission holds the sum
of the instances' memory limits to the memory lent.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from p2pfaas.exec.metering import CGROUP_ROOT

CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class NodeCgroup:
    """A prepared parent cgroup; `parent` is what Docker's `cgroup_parent` takes."""

    parent: str  # "/p2pfaas-<owner>"
    version: int
    root: Path = CGROUP_ROOT

    def remove(self) -> None:
        """Remove the directories (Docker made one in every v1 hierarchy) once no container is left
        in them. Best effort: a directory still in use stays."""
        name = self.parent.strip("/")
        directories = [self.root / name]
        if self.version == 1:
            with contextlib.suppress(OSError):
                directories = [self.root / hierarchy / name for hierarchy in os.listdir(self.root)]
        for directory in directories:
            with contextlib.suppress(OSError):
                directory.rmdir()


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def prepare(name: str, *, cpus: float, memory_mb: int, root: Path = CGROUP_ROOT) -> NodeCgroup | str:
    """Create (or reuse) the parent cgroup `name` with a quota of `cpus` cores and `memory_mb`.

    Returns the `NodeCgroup`, or a string saying why it could not (never raises for that).
    """
    assert cpus > 0 and memory_mb > 0
    quota_us = max(1000, round(cpus * CFS_PERIOD_US))
    try:
        if (root / "cgroup.controllers").exists():
            directory = root / name
            directory.mkdir(exist_ok=True)
            _write(directory / "cpu.max", f"{quota_us} {CFS_PERIOD_US}")
            _write(directory / "memory.max", str(memory_mb << 20))
            return NodeCgroup(f"/{name}", 2, root)
        cpu, memory = root / "cpu" / name, root / "memory" / name
        for directory in (cpu, memory):
            directory.mkdir(exist_ok=True)
        _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(quota_us))
        _write(memory / "memory.limit_in_bytes", str(memory_mb << 20))
        return NodeCgroup(f"/{name}", 1, root)
    except OSError as exc:
        return f"cannot set up the node's cgroup {name} under {root}: {exc.strerror or exc}"

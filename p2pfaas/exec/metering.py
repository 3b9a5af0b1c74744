"""Per-invocation resource metering: CPU time and peak memory, from the kernel, never a wall clock.

A `Meter` belongs to one warm instance. `begin()` is called just before an invocation is sent to the
instance and `end()` just after its answer; `end` returns the `Usage` in between. Instances serve one
invocation at a time, so the whole instance's counters are the invocation's.

- `CgroupMeter`: a container's cgroup. cgroup v1: `cpuacct.usage` (ns, cumulative) and
  `memory.max_usage_in_bytes` (reset to the current usage at `begin` by writing 0, which needs
  root, as the daemon is); cgroup v2: `cpu.stat` `usage_usec` and `memory.peak` (reset where the
  kernel allows writing it, else the peak since the container started: an upper bound).
- `ProcMeter`: a process tree's leader, from /proc: `utime+stime` of the process and its reaped
  children, and `VmHWM` (peak RSS), reset by writing 5 to `clear_refs`.

The files are sysfs/procfs, served from kernel memory, so they are read synchronously with
`os.pread` on descriptors kept open for the instance's life (a few microseconds per invocation).
`CgroupMeter.tasks` (the pids controller's `pids.current`) tells the warm pool whether anything
but the shim is left running after a call: a call is metered until everything it started is gone
(see `runtime/shim.py`), and an instance where something is left is replaced, not metered on.
What this does not do: price anything (see `pricing.py`) or meter the shim's idle time between
invocations (nobody pays for that; the volunteer lends it).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CGROUP_ROOT = Path("/sys/fs/cgroup")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """What one invocation used."""

    cpu_s: float
    peak_memory_bytes: int

    @property
    def peak_memory_mb(self) -> int:
        return -(-self.peak_memory_bytes // (1024 * 1024))  # rounded up: a started MiB counts


NO_USAGE = Usage(0.0, 0)


class Meter(Protocol):
    def begin(self) -> None: ...

    def end(self) -> Usage: ...

    def close(self) -> None: ...


class NullMeter:
    """For instances that cannot be metered (the counters vanished): reports zero usage."""

    def begin(self) -> None:
        pass

    def end(self) -> Usage:
        return NO_USAGE

    def close(self) -> None:
        pass


def _read(fd: int) -> bytes:
    return os.pread(fd, 4096, 0)


class _Files:
    """Open descriptors, closed together."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def open(self, path: Path, flags: int = os.O_RDONLY) -> int:
        fd = os.open(path, flags | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def cgroup_dirs(
    container_id: str, *, root: Path = CGROUP_ROOT, parent: str = ""
) -> tuple[Path, Path, int] | None:
    """(cpu dir, memory dir, cgroup version) of a Docker container, or None if not found.

    Covers the cgroupfs driver (`docker/<id>`, or `<parent>/<id>` under a node's own parent cgroup)
    and the systemd driver (`system.slice/docker-<id>.scope`).
    """
    candidates = [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]
    if parent:
        candidates.insert(0, f"{parent.strip('/')}/{container_id}")
    if (root / "cgroup.controllers").exists():  # unified hierarchy: cgroup v2
        for rel in candidates:
            if (root / rel / "cpu.stat").exists():
                return root / rel, root / rel, 2
        return None
    for rel in candidates:
        cpu_dirs = (root / controller / rel for controller in ("cpuacct", "cpu,cpuacct"))
        cpu = next((path for path in cpu_dirs if (path / "cpuacct.usage").exists()), None)
        memory = root / "memory" / rel
        if cpu is not None and (memory / "memory.max_usage_in_bytes").exists():
            return cpu, memory, 1
    return None


class CgroupMeter:
    """Meters a container through its cgroup files (v1 or v2). Driven by the instance per invocation."""

    def __init__(
        self, cpu_dir: Path, memory_dir: Path, version: int, *, pids_dir: Path | None = None
    ) -> None:
        self._files = _Files()
        self._version = version
        self._cpu_start = 0
        self._tasks_fd: int | None = None
        try:
            if pids_dir is not None and (pids_dir / "pids.current").exists():
                self._tasks_fd = self._files.open(pids_dir / "pids.current")
            if version == 1:
                self._cpu_fd = self._files.open(cpu_dir / "cpuacct.usage")
                self._peak_fd = self._files.open(memory_dir / "memory.max_usage_in_bytes", os.O_RDWR)
                self._peak_resettable = True
            else:
                self._cpu_fd = self._files.open(cpu_dir / "cpu.stat")
                try:
                    self._peak_fd = self._files.open(memory_dir / "memory.peak", os.O_RDWR)
                    self._peak_resettable = True
                except OSError:
                    self._peak_fd = self._files.open(memory_dir / "memory.peak")
                    self._peak_resettable = False
        except BaseException:
            self._files.close()
            raise

    @classmethod
    def for_container(cls, container_id: str, *, root: Path = CGROUP_ROOT, parent: str = "") -> Meter:
        found = cgroup_dirs(container_id, root=root, parent=parent)
        if found is None:
            return NullMeter()
        _, memory_dir, version = found
        pids_dir = memory_dir if version == 2 else root / "pids" / memory_dir.relative_to(root / "memory")
        try:
            return cls(*found, pids_dir=pids_dir)
        except OSError:
            return NullMeter()

    def tasks(self) -> int | None:
        """The tasks (threads of every process) in the cgroup now; None without a pids controller."""
        if self._tasks_fd is None:
            return None
        return int(_read(self._tasks_fd))

    def _cpu_ns(self) -> int:
        data = _read(self._cpu_fd)
        if self._version == 1:
            return int(data)
        for line in data.split(b"\n"):
            if line.startswith(b"usage_usec "):
                return int(line.split()[1]) * 1000
        return 0

    @property
    def peak_resets(self) -> bool:
        """Whether the peak is per invocation (v1, or v2 where the kernel lets memory.peak be reset);
        if not, it is the peak since the container started: an upper bound."""
        return self._peak_resettable

    def begin(self) -> None:
        if self._peak_resettable:
            try:
                os.pwrite(self._peak_fd, b"0", 0)
            except OSError:  # e.g. a v2 kernel older than 6.12: the peak since start, an upper bound
                self._peak_resettable = False
        self._cpu_start = self._cpu_ns()

    def end(self) -> Usage:
        cpu_ns = self._cpu_ns() - self._cpu_start
        peak = int(_read(self._peak_fd).split()[0] or 0)
        return Usage(cpu_s=max(cpu_ns, 0) / 1e9, peak_memory_bytes=peak)

    def close(self) -> None:
        self._files.close()


class ProcMeter:
    """Meters a process (the unsandboxed executor's shim) through /proc/<pid>. Driven per invocation."""

    def __init__(self, pid: int, *, proc: Path = Path("/proc")) -> None:
        self._files = _Files()
        self._cpu_start = 0
        try:
            self._stat_fd = self._files.open(proc / str(pid) / "stat")
            self._status_fd = self._files.open(proc / str(pid) / "status")
            try:
                self._clear_fd: int | None = self._files.open(proc / str(pid) / "clear_refs", os.O_WRONLY)
            except OSError:
                self._clear_fd = None
        except BaseException:
            self._files.close()
            raise

    @classmethod
    def for_pid(cls, pid: int) -> Meter:
        try:
            return cls(pid)
        except OSError:
            return NullMeter()

    def _cpu_ticks(self) -> int:
        # Fields after the parenthesised command: utime, stime, cutime, cstime are 14..17 (1-based).
        data = _read(self._stat_fd)
        fields = data[data.rindex(b")") + 2 :].split()
        return sum(int(value) for value in fields[11:15])

    def begin(self) -> None:
        if self._clear_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._clear_fd, b"5")  # reset VmHWM to the current RSS
        self._cpu_start = self._cpu_ticks()

    def end(self) -> Usage:
        ticks = self._cpu_ticks() - self._cpu_start
        peak_kb = 0
        for line in _read(self._status_fd).split(b"\n"):
            if line.startswith(b"VmHWM:"):
                peak_kb = int(line.split()[1])
                break
        return Usage(cpu_s=max(ticks, 0) / _CLOCK_TICKS, peak_memory_bytes=peak_kb * 1024)

    def close(self) -> None:
        self._files.close()

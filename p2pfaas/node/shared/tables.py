"""`SharedTables`: the primary creates the segment, workers attach to it; the three tables over it."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

from p2pfaas.errors import ConfigError
from p2pfaas.node.shared.invocations import (
    _SPILLED_NAME,
    WAYS,
    InvocationTable,
)
from p2pfaas.node.shared.loads import LoadBoard
from p2pfaas.node.shared.segment import SharedHandle
from p2pfaas.node.shared.spends import VOUCHER_WAYS, SharedSpends


class SharedTables:
    """The segment, attached in this process, and its three tables."""

    def __init__(self, memory: shared_memory.SharedMemory, handle: SharedHandle) -> None:
        self._memory = memory
        self.handle = handle
        buf = memory.buf
        assert buf is not None and len(buf) >= handle.size
        self.invocations = InvocationTable(buf, handle)
        self.spends = SharedSpends(buf, handle)
        self.loads = LoadBoard(buf, handle)

    @classmethod
    def create(
        cls,
        *,
        workers: int,
        result_slots: int = 16384,
        voucher_slots: int = 4096,
        result_ttl_s: float = 600.0,
        spill_dir: Path,
    ) -> SharedTables:
        """Make the segment (zeroed: every table empty), in the primary, before starting workers."""
        if not 1 <= workers <= 0xFFFF:
            raise ConfigError(f"workers must be 1 to 65535, not {workers}")
        if (
            result_slots < WAYS
            or result_slots % WAYS
            or voucher_slots < VOUCHER_WAYS
            or voucher_slots % VOUCHER_WAYS
        ):
            raise ConfigError(f"result_slots must be a multiple of {WAYS}, voucher_slots of {VOUCHER_WAYS}")
        spill_dir.mkdir(parents=True, exist_ok=True)
        for path in spill_dir.iterdir():  # spilled by a previous run: no slot points to them now
            if _SPILLED_NAME.fullmatch(path.name):
                path.unlink(missing_ok=True)
        lock = multiprocessing.get_context("spawn").Lock()
        handle = SharedHandle("", lock, workers, result_slots, voucher_slots, result_ttl_s, spill_dir)
        memory = shared_memory.SharedMemory(create=True, size=handle.size)
        return cls(memory, dataclasses.replace(handle, name=memory.name))

    @classmethod
    def attach(cls, handle: SharedHandle) -> SharedTables:
        """Attach to the primary's segment, in a worker."""
        return cls(_attach_untracked(handle.name), handle)

    def close(self) -> None:
        """Detach (every process, on exit). The tables are unusable afterwards."""
        self._memory.close()  # releases the memoryview the tables share, then unmaps

    def unlink(self) -> None:
        """Destroy the segment (the creator, after `close`, once the workers have exited)."""
        self._memory.unlink()


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Attach without registering the segment with this process's resource tracker.

    The creator's registration is the one that counts: its `unlink` withdraws it, and if the whole
    process tree dies first the tracker unlinks the segment. Python < 3.13 registers every attach
    too (bpo-39959). A spawned child shares its parent's tracker, so unregistering after attaching
    would withdraw the creator's registration (its `unlink` then makes the tracker print a
    KeyError); a process with a tracker of its own would unlink the segment when it exits.
    """
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name, track=False)
    register = resource_tracker.register
    resource_tracker.register = _not_registered  # only for this call; another thread's register is lost
    try:
        return shared_memory.SharedMemory(name)
    finally:
        resource_tracker.register = register


def _not_registered(name: object, rtype: str) -> None:
    return None

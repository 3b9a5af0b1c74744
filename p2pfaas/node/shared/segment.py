"""The byte layout of a node's shared segment: where each table starts, and the sizes of its entries."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLOT_BYTES = 1024  # one invocation slot
# A voucher entry: this header (in use, voucher id hash, budget, expires at, charged), then one column per
# worker process of what it has reserved, so that a dead worker's reservations can be dropped.
VOUCHER_HEADER = struct.Struct("<B7x16sqdqq")  # used, id hash, budget, expiry, charged, priced
MICRO = struct.Struct("<q")
LOAD_ROW = struct.Struct("<8q")  # one worker's load counters (`loads.LoadRow`)


@dataclass(frozen=True)
class SharedHandle:
    """What a worker process needs to attach (pickled into `Process(args=...)` at spawn)."""

    name: str
    lock: Any  # multiprocessing.get_context("spawn").Lock()
    workers: int
    result_slots: int
    voucher_slots: int
    result_ttl_s: float
    spill_dir: Path

    @property
    def spends_offset(self) -> int:
        return self.result_slots * SLOT_BYTES

    @property
    def voucher_entry_bytes(self) -> int:
        return VOUCHER_HEADER.size + self.workers * MICRO.size

    @property
    def loads_offset(self) -> int:
        return self.spends_offset + self.voucher_slots * self.voucher_entry_bytes

    @property
    def size(self) -> int:
        return self.loads_offset + self.workers * LOAD_ROW.size

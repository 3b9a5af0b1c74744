"""`LoadBoard`: one row of load counters per worker process, which the primary sums for gossip."""

from __future__ import annotations

from typing import NamedTuple

from p2pfaas.node.shared.segment import LOAD_ROW, SharedHandle


class LoadRow(NamedTuple):
    """One process's row on the load board; its fields, in order, are the row's packed layout."""

    slots: int = 0
    free_slots: int = 0
    queue_length: int = 0
    running: int = 0
    invocations: int = 0
    peer_room: int = 0  # the primary's row: free slots its gossip view sees at peers
    warm: int = 0  # function instances the process keeps started (its metrics)
    memory_mb: int = 0  # memory its running invocations hold (its metrics)


class LoadBoard:
    """Each worker's load counters. A worker writes only its own row, without the lock: a reader
    may see one row half old, half new, which gossip (seconds old anyway) does not mind."""

    def __init__(self, buf: memoryview, handle: SharedHandle) -> None:
        self._buf = buf
        self._offset = handle.loads_offset
        self.workers = handle.workers

    def write(self, worker: int, row: LoadRow) -> None:
        assert 0 <= worker < self.workers, worker
        LOAD_ROW.pack_into(self._buf, self._offset + worker * LOAD_ROW.size, *row)

    def clear(self, worker: int) -> None:
        """`worker` serves nothing (stopped, or dead and not yet restarted)."""
        self.write(worker, LoadRow())

    def row(self, worker: int) -> LoadRow:
        assert 0 <= worker < self.workers, worker
        return LoadRow(*LOAD_ROW.unpack_from(self._buf, self._offset + worker * LOAD_ROW.size))

    def totals(self, exclude: int | None = None) -> LoadRow:
        """The rows summed (leaving out `exclude`'s, e.g. the caller's own fresher counters)."""
        at = self._offset
        rows = [
            LOAD_ROW.unpack_from(self._buf, at + w * LOAD_ROW.size)
            for w in range(self.workers)
            if w != exclude
        ]
        return LoadRow(*(sum(column) for column in zip(*rows, strict=True)))

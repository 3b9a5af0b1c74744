"""A node's cross-process tables, in one shared-memory segment under one lock (issue #4).

A node of N worker processes (one event loop per core, one port shared with SO_REUSEPORT) keeps here
what its workers must agree on (docs/node-workers.md, "Shared state"):

- `InvocationTable`: exactly once per node. An invocation id is claimed by one worker; a retry that
  lands on another worker sees it running there, or gets its stored result, or is refused when
  another lessee's request used the id.
- `SharedSpends`: what every voucher has charged, and what each worker has reserved on it, so that
  the workers together never accept more work on a voucher than its budget (the `SpendStore` of
  `p2pfaas.node.payments`), and a worker that dies takes its reservations with it.
- `LoadBoard`: each worker's load counters, which the primary sums for gossip.

The primary creates the segment (`SharedTables.create`) and hands `tables.handle` to the workers it
starts with `multiprocessing.get_context("spawn").Process(args=(handle, ...))`; each attaches with
`SharedTables.attach`. Every process calls `close()` on exit; the primary then `unlink()`s.

Sans-I/O apart from the segment itself and spilled results: callers pass `now` (time.monotonic() for
invocations, which is one clock for every process on Linux; wall time for vouchers). Not here: what
a worker does with a claim (router), nor waking a worker when another finishes (it polls, or joins
over the workers' links).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import multiprocessing
import os
import re
import struct
import sys
from dataclasses import dataclass
from hashlib import blake2b
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from typing import Any, NamedTuple

from p2pfaas.errors import Busy, ConfigError
from p2pfaas.node.payments.spends import FORGET_AFTER_S, PaymentRequired, VoucherSpend

__all__ = [
    "Claim",
    "ClaimKind",
    "InvocationTable",
    "LoadBoard",
    "LoadRow",
    "SharedHandle",
    "SharedSpends",
    "SharedTables",
    "TableFull",
]

WAYS = 8  # invocation slots per set (a set-associative table, like a CPU cache)
SLOT_BYTES = 1024
_FREE, _RUNNING, _DONE = 0, 1, 2  # a slot's state byte
# state, spilled, worker, result length, id hash, owner hash, time (claimed at; finished at when DONE)
_SLOT = struct.Struct("<BBHI16s8sd")
INLINE_RESULT_BYTES = SLOT_BYTES - _SLOT.size  # an encoded no-op result is ~400 bytes
_SLOT_FIELDS = 7
_SET = struct.Struct("<" + f"BBHI16s8sd{INLINE_RESULT_BYTES}x" * WAYS)  # the 8 headers of a set at once
_EMPTY_SLOT = (_FREE, 0, 0, 0, bytes(16), bytes(8), 0.0)

VOUCHER_WAYS = 16  # more ways than invocations: a full set refuses a voucher, not just a result
# An entry: this header (in use, voucher id hash, budget, expires at, charged), then one column per
# worker process of what it has reserved, so that a dead worker's reservations can be dropped.
_VOUCHER = struct.Struct("<B7x16sqdq")
_VOUCHER_KEY_BYTES = 24  # in use and the id hash: the part of the header a set's lookup reads
_MICRO = struct.Struct("<q")

_LOAD = struct.Struct("<6q")
_SPILLED_NAME = re.compile(r"[0-9a-f]{32}|\.[0-9a-f]{32}\.\d+\.tmp")


class TableFull(Busy):
    """HTTP 503: every way of the invocation id's set holds an invocation in progress."""


class ClaimKind(enum.Enum):
    NEW = "new"  # the caller runs it (claim) / nobody has it (lookup)
    RUNNING = "running"  # on `worker`
    DONE = "done"  # `result` holds the stored answer
    WRONG_OWNER = "wrong owner"  # another lessee's request used this id (HTTP 409)
    LOST = "lost"  # it finished but its spilled result is gone: refuse, never run it twice


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    worker: int = -1
    result: bytes = b""


_NEW = Claim(ClaimKind.NEW)


def _owner_key(owner: bytes) -> bytes:
    return blake2b(owner, digest_size=8).digest()


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
        return _VOUCHER.size + self.workers * _MICRO.size

    @property
    def loads_offset(self) -> int:
        return self.spends_offset + self.voucher_slots * self.voucher_entry_bytes

    @property
    def size(self) -> int:
        return self.loads_offset + self.workers * _LOAD.size


class InvocationTable:
    """Which worker runs each invocation id, and the results of those done (for `result_ttl_s`).

    Sets of WAYS fixed slots: a header and the result inline; a larger result goes to
    `spill_dir/<id hash>`. Inserting takes a free way, else the DONE way finished longest ago
    (expired ones first, as they are the oldest); it never evicts a RUNNING one.
    """

    def __init__(self, buf: memoryview, handle: SharedHandle) -> None:
        self._buf = buf
        self._lock = handle.lock
        self._sets = handle.result_slots // WAYS
        self._ttl_s = handle.result_ttl_s
        self._spill_dir = handle.spill_dir

    def claim(self, invocation_id: str, owner: bytes, *, worker: int, now: float) -> Claim:
        """Take the id for `worker` (NEW), or say who has it or what it returned."""
        key, base = self._set_of(invocation_id)
        owner_key = _owner_key(owner)
        with self._lock:
            fields = _SET.unpack_from(self._buf, base)
            keys = fields[4::_SLOT_FIELDS]  # a free slot's key is zeroed, so a match is in use
            way = keys.index(key) if key in keys else -1
            if way < 0 or self._expired(fields, way, now):
                way = self._make_room(fields) if way < 0 else self._drop_spilled(fields, way)
                _SLOT.pack_into(
                    self._buf, base + way * SLOT_BYTES, _RUNNING, 0, worker, 0, key, owner_key, now
                )
                return _NEW
            found = self._found(fields, way, owner_key, base)
        return self._read_spilled(found, key)

    def lookup(self, invocation_id: str, owner: bytes, *, now: float) -> Claim:
        """What `claim` would answer, without taking the id: NEW when nobody has it."""
        key, base = self._set_of(invocation_id)
        owner_key = _owner_key(owner)
        with self._lock:
            fields = _SET.unpack_from(self._buf, base)
            keys = fields[4::_SLOT_FIELDS]
            if key not in keys or self._expired(fields, keys.index(key), now):
                return _NEW
            found = self._found(fields, keys.index(key), owner_key, base)
        return self._read_spilled(found, key)

    def finish(self, invocation_id: str, result: bytes | None, *, worker: int, now: float) -> None:
        """`worker`'s invocation ended: store its result (DONE from `now`), or free the id (None)."""
        key, base = self._set_of(invocation_id)
        temporary = None
        if result is not None and len(result) > INLINE_RESULT_BYTES:
            temporary = self._spill_dir / f".{key.hex()}.{os.getpid()}.tmp"
            temporary.write_bytes(result)  # outside the lock; moved into place under it
        with self._lock:
            fields = _SET.unpack_from(self._buf, base)
            keys = fields[4::_SLOT_FIELDS]
            way = keys.index(key) if key in keys else -1
            i, at = way * _SLOT_FIELDS, base + way * SLOT_BYTES
            # Anything but this worker's RUNNING entry is left alone: the id is not its own any more.
            if way >= 0 and fields[i] == _RUNNING and fields[i + 2] == worker:
                if result is None:
                    _SLOT.pack_into(self._buf, at, *_EMPTY_SLOT)
                else:
                    spilled = temporary is not None
                    if temporary is None:
                        self._buf[at + _SLOT.size : at + _SLOT.size + len(result)] = result
                    else:
                        os.replace(temporary, self._spill_dir / key.hex())
                        temporary = None
                    owner_key = fields[i + 5]
                    _SLOT.pack_into(self._buf, at, _DONE, spilled, worker, len(result), key, owner_key, now)
        if temporary is not None:
            temporary.unlink()

    def release_worker(self, worker: int) -> int:
        """`worker` died: free the ids it was running (they may be tried again). How many."""
        freed = 0
        with self._lock:
            for base in range(0, self._sets * WAYS * SLOT_BYTES, WAYS * SLOT_BYTES):
                fields = _SET.unpack_from(self._buf, base)
                for way in range(WAYS):
                    state, _, owner_worker = fields[way * _SLOT_FIELDS : way * _SLOT_FIELDS + 3]
                    if state == _RUNNING and owner_worker == worker:
                        _SLOT.pack_into(self._buf, base + way * SLOT_BYTES, *_EMPTY_SLOT)
                        freed += 1
        return freed

    def _set_of(self, invocation_id: str) -> tuple[bytes, int]:
        """The id's 128-bit key, and where its set starts in the segment."""
        key = blake2b(invocation_id.encode(), digest_size=16).digest()
        return key, int.from_bytes(key[:8], "little") % self._sets * _SET.size

    # --- under the lock ------------------------------------------------------------------------

    def _expired(self, fields: tuple[Any, ...], way: int, now: float) -> bool:
        i = way * _SLOT_FIELDS
        return bool(fields[i] == _DONE and now - fields[i + 6] > self._ttl_s)

    def _found(self, fields: tuple[Any, ...], way: int, owner_key: bytes, base: int) -> Claim | int:
        """The answer for the id in `way`; only the worker that finished it when the result is spilled."""
        state, spilled, worker, length, _, slot_owner, _ = fields[
            way * _SLOT_FIELDS : (way + 1) * _SLOT_FIELDS
        ]
        if slot_owner != owner_key:
            return Claim(ClaimKind.WRONG_OWNER)
        if state == _RUNNING:
            return Claim(ClaimKind.RUNNING, worker)
        assert state == _DONE, state
        if spilled:
            return int(worker)
        start = base + way * SLOT_BYTES + _SLOT.size
        return Claim(ClaimKind.DONE, worker, bytes(self._buf[start : start + length]))

    def _read_spilled(self, found: Claim | int, key: bytes) -> Claim:
        # Read outside the lock: a file evicted meanwhile is lost either way.
        if isinstance(found, Claim):
            return found
        try:
            return Claim(ClaimKind.DONE, found, (self._spill_dir / key.hex()).read_bytes())
        except FileNotFoundError:
            return Claim(ClaimKind.LOST, found)

    def _make_room(self, fields: tuple[Any, ...]) -> int:
        """A way for a new id: a free one, else the DONE one finished longest ago."""
        states = fields[0::_SLOT_FIELDS]
        if _FREE in states:
            return states.index(_FREE)
        if _RUNNING in states:
            done = [(fields[way * _SLOT_FIELDS + 6], way) for way in range(WAYS) if states[way] == _DONE]
        else:  # the common case once the table has filled up
            done = list(zip(fields[6::_SLOT_FIELDS], range(WAYS), strict=True))
        if not done:
            raise TableFull(
                f"this node has too many invocations in progress ({WAYS} share this id's slot set); "
                "try again or another node"
            )
        return self._drop_spilled(fields, min(done)[1])

    def _drop_spilled(self, fields: tuple[Any, ...], way: int) -> int:
        """Unlink the spilled result of the DONE entry in `way`, which is about to be reused."""
        i = way * _SLOT_FIELDS
        if fields[i] == _DONE and fields[i + 1]:
            with contextlib.suppress(FileNotFoundError):
                (self._spill_dir / fields[i + 4].hex()).unlink()
        return way


class SharedSpends:
    """The node's voucher spends for every worker: a `SpendStore` in the segment, under the lock.

    Sets of VOUCHER_WAYS entries keyed by a 128-bit hash of the voucher id. An entry holds what the
    voucher has charged and, per worker, what that worker has reserved; the budget bounds their sum.
    A voucher expired more than FORGET_AFTER_S ago is reclaimed when its set needs room, or by
    `forget`. When a worker process dies, the primary calls `release_worker`: its reservations died
    with its `VoucherBook`, so they are dropped, and what it charged stays.
    """

    def __init__(self, buf: memoryview, handle: SharedHandle) -> None:
        self._buf = buf
        self._lock = handle.lock
        self._offset = handle.spends_offset
        self._sets = handle.voucher_slots // VOUCHER_WAYS
        self._workers = handle.workers
        self._entry_bytes = handle.voucher_entry_bytes
        self._keys = struct.Struct(
            "<" + f"B7x16s{self._entry_bytes - _VOUCHER_KEY_BYTES}x" * VOUCHER_WAYS
        )  # the keys of a set at once
        self._reserved = struct.Struct(f"<{self._workers}q")
        self._end = self._offset + self._sets * VOUCHER_WAYS * self._entry_bytes

    def reserve(
        self,
        voucher_id: str,
        *,
        budget_micro: int,
        expires_at: float,
        cost_micro: int,
        worker: int,
        now: float,
    ) -> int | None:
        column = self._column(worker)
        with self._lock:
            at = self._entry(voucher_id, budget_micro, expires_at, now)
            _, _, budget, _, charged = _VOUCHER.unpack_from(self._buf, at)
            committed = charged + sum(self._reserved.unpack_from(self._buf, at + _VOUCHER.size))
            if committed + cost_micro > budget:
                return int(budget - committed)
            (reserved,) = _MICRO.unpack_from(self._buf, at + column)
            _MICRO.pack_into(self._buf, at + column, reserved + cost_micro)
        return None

    def settle(self, voucher_id: str, *, reserved_micro: int, charge_micro: int, worker: int) -> None:
        assert 0 <= charge_micro <= reserved_micro, (voucher_id, charge_micro, reserved_micro)
        column = self._column(worker)
        with self._lock:
            at = self._find(voucher_id)
            if at < 0:
                return
            used, key, budget, expires, charged = _VOUCHER.unpack_from(self._buf, at)
            (reserved,) = _MICRO.unpack_from(self._buf, at + column)
            assert reserved >= reserved_micro, (voucher_id, worker, reserved, reserved_micro)
            _MICRO.pack_into(self._buf, at + column, reserved - reserved_micro)
            _VOUCHER.pack_into(self._buf, at, used, key, budget, expires, charged + charge_micro)

    def release(self, voucher_id: str, *, reserved_micro: int, worker: int) -> None:
        self.settle(voucher_id, reserved_micro=reserved_micro, charge_micro=0, worker=worker)

    def release_worker(self, worker: int) -> int:
        """`worker` died: drop what it had reserved on every voucher. How many micro-credits."""
        column = self._column(worker)
        freed = 0
        with self._lock:
            for at in range(self._offset + column, self._end, self._entry_bytes):
                (reserved,) = _MICRO.unpack_from(self._buf, at)  # 0 in a free entry
                if reserved:
                    _MICRO.pack_into(self._buf, at, 0)
                    freed += reserved
        return freed

    def restore(
        self, voucher_id: str, *, budget_micro: int, expires_at: float, charged_micro: int, now: float
    ) -> None:
        with self._lock:
            at = self._entry(voucher_id, budget_micro, expires_at, now)
            used, key, budget, expires, charged = _VOUCHER.unpack_from(self._buf, at)
            _VOUCHER.pack_into(self._buf, at, used, key, budget, expires, charged + charged_micro)

    def get(self, voucher_id: str) -> VoucherSpend | None:
        with self._lock:
            at = self._find(voucher_id)
            if at < 0:
                return None
            _, _, budget, expires, charged = _VOUCHER.unpack_from(self._buf, at)
            reserved = sum(self._reserved.unpack_from(self._buf, at + _VOUCHER.size))
        return VoucherSpend(budget, expires, charged + reserved, charged)

    def forget(self, *, now: float) -> int:
        forgotten = 0
        with self._lock:
            for at in range(self._offset, self._end, self._entry_bytes):
                used, _, _, expires, _ = _VOUCHER.unpack_from(self._buf, at)
                if used and expires + FORGET_AFTER_S < now:
                    self._buf[at : at + self._entry_bytes] = bytes(self._entry_bytes)
                    forgotten += 1
        return forgotten

    def _column(self, worker: int) -> int:
        """Where `worker`'s reservation is in an entry."""
        assert 0 <= worker < self._workers, (worker, self._workers)
        return _VOUCHER.size + worker * _MICRO.size

    # --- under the lock ------------------------------------------------------------------------

    def _set_of(self, voucher_id: str) -> tuple[bytes, int]:
        key = blake2b(voucher_id.encode(), digest_size=16).digest()
        return key, self._offset + int.from_bytes(key[:8], "little") % self._sets * self._keys.size

    def _find(self, voucher_id: str) -> int:
        key, base = self._set_of(voucher_id)
        keys = self._keys.unpack_from(self._buf, base)[1::2]  # a free entry's key is zeroed
        return base + keys.index(key) * self._entry_bytes if key in keys else -1

    def _entry(self, voucher_id: str, budget_micro: int, expires_at: float, now: float) -> int:
        """The voucher's entry, made empty if it has none; PaymentRequired if no room."""
        key, base = self._set_of(voucher_id)
        keys = self._keys.unpack_from(self._buf, base)[1::2]
        if key in keys:
            return base + keys.index(key) * self._entry_bytes
        for at in range(base, base + self._keys.size, self._entry_bytes):
            used, _, _, expires, _ = _VOUCHER.unpack_from(self._buf, at)
            if not used or expires + FORGET_AFTER_S < now:
                self._buf[at : at + self._entry_bytes] = bytes(self._entry_bytes)
                _VOUCHER.pack_into(self._buf, at, 1, key, budget_micro, expires_at, 0)
                return at
        raise PaymentRequired(
            f"this node's voucher table is full ({VOUCHER_WAYS} vouchers in use share a slot set with "
            f"{voucher_id}); try another node"
        )


class LoadRow(NamedTuple):
    """One process's row on the load board; its fields, in order, are the row's packed layout."""

    slots: int = 0
    free_slots: int = 0
    queue_length: int = 0
    running: int = 0
    invocations: int = 0
    peer_room: int = 0  # the primary's row: free slots its gossip view sees at peers


class LoadBoard:
    """Each worker's load counters. A worker writes only its own row, without the lock: a reader
    may see one row half old, half new, which gossip (seconds old anyway) does not mind."""

    def __init__(self, buf: memoryview, handle: SharedHandle) -> None:
        self._buf = buf
        self._offset = handle.loads_offset
        self.workers = handle.workers

    def write(self, worker: int, row: LoadRow) -> None:
        assert 0 <= worker < self.workers, worker
        _LOAD.pack_into(self._buf, self._offset + worker * _LOAD.size, *row)

    def clear(self, worker: int) -> None:
        """`worker` serves nothing (stopped, or dead and not yet restarted)."""
        self.write(worker, LoadRow())

    def row(self, worker: int) -> LoadRow:
        assert 0 <= worker < self.workers, worker
        return LoadRow(*_LOAD.unpack_from(self._buf, self._offset + worker * _LOAD.size))

    def totals(self, exclude: int | None = None) -> LoadRow:
        """The rows summed (leaving out `exclude`'s, e.g. the caller's own fresher counters)."""
        at = self._offset
        rows = [
            _LOAD.unpack_from(self._buf, at + w * _LOAD.size) for w in range(self.workers) if w != exclude
        ]
        return LoadRow(*(sum(column) for column in zip(*rows, strict=True)))


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

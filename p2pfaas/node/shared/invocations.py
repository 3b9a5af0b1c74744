"""`InvocationTable`: exactly once per node, across its worker processes. A set-associative table of
invocation ids: a claim finds the id new (run it), running in some worker, done (its stored result,
inline or spilled to a file), or used by another lessee's request.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import struct
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from p2pfaas.errors import Busy
from p2pfaas.node.shared.segment import SLOT_BYTES, SharedHandle

_FREE, _RUNNING, _DONE = 0, 1, 2  # a slot's state byte


WAYS = 8  # invocation slots per set (a set-associative table, like a CPU cache)


# state, spilled, worker, result length, id hash, owner hash, time (claimed at; finished at when DONE)
_SLOT = struct.Struct("<BBHI16s8sd")


INLINE_RESULT_BYTES = SLOT_BYTES - _SLOT.size  # an encoded no-op result is ~400 bytes


_SLOT_FIELDS = 7


_SET = struct.Struct("<" + f"BBHI16s8sd{INLINE_RESULT_BYTES}x" * WAYS)  # the 8 headers of a set at once


_EMPTY_SLOT = (_FREE, 0, 0, 0, bytes(16), bytes(8), 0.0)


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

"""`SharedSpends`: what each voucher has charged, and what each worker has reserved on it, in shared
memory (the `SpendStore` of `p2pfaas.node.payments` for a node of several worker processes).
"""

from __future__ import annotations

import struct
from hashlib import blake2b

from p2pfaas.node.payments.spends import FORGET_AFTER_S, PaymentRequired, VoucherSpend
from p2pfaas.node.shared.segment import MICRO, VOUCHER_HEADER, SharedHandle

VOUCHER_WAYS = 16  # more ways than invocations: a full set refuses a voucher, not just a result


_VOUCHER_KEY_BYTES = 24  # in use and the id hash: the part of the header a set's lookup reads


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
            _, _, budget, _, charged, _ = VOUCHER_HEADER.unpack_from(self._buf, at)
            committed = charged + sum(self._reserved.unpack_from(self._buf, at + VOUCHER_HEADER.size))
            if committed + cost_micro > budget:
                return int(budget - committed)
            (reserved,) = MICRO.unpack_from(self._buf, at + column)
            MICRO.pack_into(self._buf, at + column, reserved + cost_micro)
        return None

    def settle(
        self, voucher_id: str, *, reserved_micro: int, charge_micro: int, worker: int, price_micro: int = 0
    ) -> None:
        assert 0 <= charge_micro <= reserved_micro, (voucher_id, charge_micro, reserved_micro)
        column = self._column(worker)
        with self._lock:
            at = self._find(voucher_id)
            if at < 0:
                return
            used, key, budget, expires, charged, priced = VOUCHER_HEADER.unpack_from(self._buf, at)
            (reserved,) = MICRO.unpack_from(self._buf, at + column)
            assert reserved >= reserved_micro, (voucher_id, worker, reserved, reserved_micro)
            MICRO.pack_into(self._buf, at + column, reserved - reserved_micro)
            VOUCHER_HEADER.pack_into(
                self._buf, at, used, key, budget, expires, charged + charge_micro, priced + price_micro
            )

    def release(self, voucher_id: str, *, reserved_micro: int, worker: int) -> None:
        self.settle(voucher_id, reserved_micro=reserved_micro, charge_micro=0, worker=worker)

    def release_worker(self, worker: int) -> int:
        """`worker` died: drop what it had reserved on every voucher. How many micro-credits."""
        column = self._column(worker)
        freed = 0
        with self._lock:
            for at in range(self._offset + column, self._end, self._entry_bytes):
                (reserved,) = MICRO.unpack_from(self._buf, at)  # 0 in a free entry
                if reserved:
                    MICRO.pack_into(self._buf, at, 0)
                    freed += reserved
        return freed

    def restore(
        self,
        voucher_id: str,
        *,
        budget_micro: int,
        expires_at: float,
        charged_micro: int,
        now: float,
        priced_micro: int = 0,
    ) -> None:
        with self._lock:
            at = self._entry(voucher_id, budget_micro, expires_at, now)
            used, key, budget, expires, charged, priced = VOUCHER_HEADER.unpack_from(self._buf, at)
            VOUCHER_HEADER.pack_into(
                self._buf, at, used, key, budget, expires, charged + charged_micro, priced + priced_micro
            )

    def get(self, voucher_id: str) -> VoucherSpend | None:
        with self._lock:
            at = self._find(voucher_id)
            if at < 0:
                return None
            _, _, budget, expires, charged, priced = VOUCHER_HEADER.unpack_from(self._buf, at)
            reserved = sum(self._reserved.unpack_from(self._buf, at + VOUCHER_HEADER.size))
        return VoucherSpend(budget, expires, charged + reserved, charged, priced)

    def left_micro(self, *, now: float) -> int:
        left = 0
        with self._lock:
            for at in range(self._offset, self._end, self._entry_bytes):
                used, _, budget, expires, charged, _ = VOUCHER_HEADER.unpack_from(self._buf, at)
                if used and expires > now:
                    left += (
                        budget
                        - charged
                        - sum(self._reserved.unpack_from(self._buf, at + VOUCHER_HEADER.size))
                    )
        return left

    def forget(self, *, now: float) -> int:
        forgotten = 0
        with self._lock:
            for at in range(self._offset, self._end, self._entry_bytes):
                used, _, _, expires, _, _ = VOUCHER_HEADER.unpack_from(self._buf, at)
                if used and expires + FORGET_AFTER_S < now:
                    self._buf[at : at + self._entry_bytes] = bytes(self._entry_bytes)
                    forgotten += 1
        return forgotten

    def _column(self, worker: int) -> int:
        """Where `worker`'s reservation is in an entry."""
        assert 0 <= worker < self._workers, (worker, self._workers)
        return VOUCHER_HEADER.size + worker * MICRO.size

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
            used, _, _, expires, _, _ = VOUCHER_HEADER.unpack_from(self._buf, at)
            if not used or expires + FORGET_AFTER_S < now:
                self._buf[at : at + self._entry_bytes] = bytes(self._entry_bytes)
                VOUCHER_HEADER.pack_into(self._buf, at, 1, key, budget_micro, expires_at, 0, 0)
                return at
        raise PaymentRequired(
            f"this node's voucher table is full ({VOUCHER_WAYS} vouchers in use share a slot set with "
            f"{voucher_id}); try another node"
        )

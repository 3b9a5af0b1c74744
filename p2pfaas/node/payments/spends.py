"""What a voucher has committed on this node (charged, and reserved by each worker process): the
`SpendStore` contract, `LocalSpends` for a one-process node, and `PaymentRequired` (HTTP 402).
Several worker processes share a store in shared memory instead (`p2pfaas.node.shared.spends.SharedSpends`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from p2pfaas.errors import Refused

log = logging.getLogger(__name__)

FORGET_AFTER_S = 3600.0  # keep a voucher's spend this long past its expiry, then drop it
FORGET_EVERY_S = 60.0  # how often a book looks for such vouchers


class PaymentRequired(Refused):
    """HTTP 402: the request's voucher cannot pay for it (missing, spent, or expiring)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=402)


@dataclass(frozen=True)
class VoucherSpend:
    """What one voucher has committed on this node, in every process of it."""

    budget_micro: int
    expires_at: float  # wall clock, as the voucher says
    committed_micro: int  # charged + reserved
    charged_micro: int
    # The node prices of the calls charged (without the anchor's fee, each call's rounded up): what
    # the lessee's channel tickets must cover (`VoucherBook._check_channels`).
    priced_micro: int = 0

    @property
    def remaining_micro(self) -> int:
        return self.budget_micro - self.committed_micro


class SpendStore(Protocol):
    """Per-voucher spends of one node: what was charged, and what each worker process has reserved.

    `reserve` is the only check-and-add: it refuses, returning what is left, rather than let
    charged + reserved pass the budget. A store may raise `PaymentRequired` when it has no room for
    another voucher. `worker` is the index of the calling process (0 in a one-process node); a
    worker settles and releases only what it reserved itself. `now` is wall time, only to reclaim
    vouchers expired more than FORGET_AFTER_S ago. `settle` and `release` ignore unknown vouchers.
    """

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
        """Add `cost_micro` to `worker`'s reservation and return None, or return what is left (unchanged)."""
        ...

    def settle(
        self, voucher_id: str, *, reserved_micro: int, charge_micro: int, worker: int, price_micro: int = 0
    ) -> None:
        """A reservation of `worker` became a charge (at most what was reserved), for a call whose
        receipt prices it at `price_micro`."""
        ...

    def release(self, voucher_id: str, *, reserved_micro: int, worker: int) -> None:
        """A reservation of `worker` is not needed any more (the invocation never ran)."""
        ...

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
        """Add what a previous run of this node charged to the voucher (and the node prices of it)."""
        ...

    def get(self, voucher_id: str) -> VoucherSpend | None: ...

    def forget(self, *, now: float) -> int:
        """Drop vouchers expired more than FORGET_AFTER_S before `now`; how many."""
        ...

    def left_micro(self, *, now: float) -> int:
        """What the vouchers still valid at `now` can pay this node beyond what they committed."""
        ...


@dataclass
class _Total:
    budget_micro: int
    expires_at: float
    charged_micro: int = 0
    reserved_micro: int = 0
    priced_micro: int = 0


class LocalSpends:
    """The `SpendStore` of a one-process node: a dict. Its one process is worker 0."""

    def __init__(self) -> None:
        self._totals: dict[str, _Total] = {}

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
        assert worker == 0, worker
        total = self._totals.setdefault(voucher_id, _Total(budget_micro, expires_at))
        committed = total.charged_micro + total.reserved_micro
        if committed + cost_micro > total.budget_micro:
            return total.budget_micro - committed
        total.reserved_micro += cost_micro
        return None

    def settle(
        self, voucher_id: str, *, reserved_micro: int, charge_micro: int, worker: int, price_micro: int = 0
    ) -> None:
        assert worker == 0 and 0 <= charge_micro <= reserved_micro, (worker, charge_micro, reserved_micro)
        total = self._totals.get(voucher_id)
        if total is not None:
            assert total.reserved_micro >= reserved_micro, (voucher_id, total, reserved_micro)
            total.reserved_micro -= reserved_micro
            total.charged_micro += charge_micro
            total.priced_micro += price_micro

    def release(self, voucher_id: str, *, reserved_micro: int, worker: int) -> None:
        self.settle(voucher_id, reserved_micro=reserved_micro, charge_micro=0, worker=worker)

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
        total = self._totals.setdefault(voucher_id, _Total(budget_micro, expires_at))
        total.charged_micro += charged_micro
        total.priced_micro += priced_micro

    def get(self, voucher_id: str) -> VoucherSpend | None:
        total = self._totals.get(voucher_id)
        if total is None:
            return None
        committed = total.charged_micro + total.reserved_micro
        return VoucherSpend(
            total.budget_micro, total.expires_at, committed, total.charged_micro, total.priced_micro
        )

    def left_micro(self, *, now: float) -> int:
        return sum(
            t.budget_micro - t.charged_micro - t.reserved_micro
            for t in self._totals.values()
            if t.expires_at > now
        )

    def forget(self, *, now: float) -> int:
        stale = [vid for vid, total in self._totals.items() if total.expires_at + FORGET_AFTER_S < now]
        for voucher_id in stale:
            del self._totals[voucher_id]
        return len(stale)

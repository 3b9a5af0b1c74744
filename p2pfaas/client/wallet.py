"""The lessee's wallet: holds a spending voucher, renews it before it runs out, attaches it to invocations.

A voucher is asked for once (budget, lifetime) and then used offline by every invocation until it
is nearly spent or nearly expired; the wallet then asks for a new one. It counts what it spent
from the receipts that come back with results (price plus the anchor's fee), so it renews before
nodes would refuse; nodes keep their own count, and the anchor's is the one that pays. Voucher
requests are idempotent by a request id drawn from the injected `rng`, kept until the anchor
answers, so a request retried after a lost answer holds the budget once.

`AccountClient.voucher` is the usual `source`. With `state_path` the current voucher and what was
spent from it are kept in a file (owner-only), so short-lived programs such as the CLI reuse one
voucher instead of holding a new budget each run. This module does not talk HTTP itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from p2pfaas import codec
from p2pfaas.clock import wall_time
from p2pfaas.environment import VOUCHER_TTL_S, voucher_state_path
from p2pfaas.errors import DecodeError, LocalError
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.messages import Receipt, Voucher
from p2pfaas.pricing import Prices

__all__ = ["VoucherSource", "Wallet"]

# (lessee keys, budget, lifetime, request id) -> an anchor-signed voucher
VoucherSource = Callable[..., Awaitable[Voucher]]


@dataclass
class Wallet:
    """One lessee key's vouchers. `await wallet.voucher(lifetime_s)` before each invocation."""

    keys: KeyPair
    source: VoucherSource  # called as source(keys, budget_micro=, ttl_s=, request_id=)
    budget_micro: int
    ttl_s: float = 3600.0
    renew_below_fraction: float = 0.1  # renew when less than this share of the budget is left
    fees: FeePolicy = field(default_factory=FeePolicy)
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = wall_time
    state_path: Path | None = None  # where the current voucher and its spend are kept between runs
    # The most this lessee pays a node, per CPU-second and per GB-second: each spend ticket caps
    # its invocation's price at these over the function's timeout, and the anchor pays no more.
    max_price_per_cpu_s_micro: int = 100
    max_price_per_gb_s_micro: int = 10
    vouchers_bought: int = 0
    _voucher: Voucher | None = None
    _spent_micro: int = 0
    _request_id: str | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def of_account(
        cls, keys: KeyPair, source: VoucherSource, *, budget_micro: int, max_price_per_cpu_s_micro: int = 100
    ) -> Wallet:
        """The wallet of a logged-in account (`source` buys its vouchers), its voucher kept between
        runs beside the token (`environment.voucher_state_path`); a GB-second at a tenth of a CPU-second."""
        return cls(
            keys,
            source,
            budget_micro=budget_micro,
            ttl_s=VOUCHER_TTL_S,
            state_path=voucher_state_path(keys.key_id),
            max_price_per_cpu_s_micro=max_price_per_cpu_s_micro,
            max_price_per_gb_s_micro=max_price_per_cpu_s_micro // 10,
        )

    def __post_init__(self) -> None:
        if self.budget_micro <= 0 or self.ttl_s <= 0:
            raise LocalError("a wallet needs a positive budget and voucher lifetime")
        if min(self.max_price_per_cpu_s_micro, self.max_price_per_gb_s_micro) < 0:
            raise LocalError("a wallet's price ceilings must not be negative")
        if self.state_path is not None:
            self._load(self.state_path)

    def cap_micro(self, *, timeout_s: float, memory_mb: int) -> int:
        """The most one invocation may cost (the node's price) under this wallet's ceilings: one
        core and `memory_mb` for the timeout and a second more (stopping a function takes a moment)."""
        ceiling = Prices(self.max_price_per_cpu_s_micro, self.max_price_per_gb_s_micro)
        wall_ms = int((timeout_s + 1.0) * 1000)
        return ceiling.charge_micro(cpu_ms=wall_ms, peak_memory_mb=memory_mb, wall_ms=wall_ms)

    def _load(self, path: Path) -> None:
        """Pick up the voucher a previous run (say, the last CLI command) left, if it is this key's."""
        try:
            state = json.loads(path.read_text())
            voucher = codec.decode_as(Voucher, base64.b64decode(state["voucher"]))
            spent = int(state["spent_micro"])
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, DecodeError):
            return  # unreadable: start afresh (the old voucher's hold returns at its expiry)
        if voucher.lessee_key == self.keys.public.raw:
            self._voucher, self._spent_micro = voucher, spent

    def _save(self) -> None:
        if self.state_path is None or self._voucher is None:
            return
        state = {
            "voucher": base64.b64encode(codec.encode(self._voucher)).decode(),
            "spent_micro": self._spent_micro,
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.state_path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(state, file)
        temporary.replace(self.state_path)

    @property
    def remaining_micro(self) -> int:
        return 0 if self._voucher is None else self._voucher.budget_micro - self._spent_micro

    async def voucher(self, *, lifetime_s: float = 0.0, cost_micro: int = 0) -> Voucher:
        """A voucher that lives `lifetime_s` more and has `cost_micro` left; renewed if needed."""
        async with self._lock:  # concurrent invocations share one renewal
            if self._needs_renewal(lifetime_s, cost_micro):
                await self._renew(lifetime_s)
            assert self._voucher is not None
            return self._voucher

    def spent(self, receipt: Receipt | None) -> None:
        """Count what a result's receipt will take out of the voucher (the node's price and the fee)."""
        if (
            receipt is not None
            and self._voucher is not None
            and receipt.voucher_id == self._voucher.voucher_id
        ):
            self._spent_micro += self.fees.charge_micro(receipt.price_micro)

    def exhausted(self) -> None:
        """A node refused the voucher as spent (402): renew on the next invocation."""
        if self._voucher is not None:
            self._spent_micro = self._voucher.budget_micro

    def _needs_renewal(self, lifetime_s: float, cost_micro: int) -> bool:
        if self._voucher is None:
            return True
        left = self.remaining_micro
        if left < max(cost_micro, 1) or left < self._voucher.budget_micro * self.renew_below_fraction:
            return True
        return self._voucher.expires_at - self.clock() < max(lifetime_s, self.ttl_s * 0.05)

    async def _renew(self, lifetime_s: float) -> None:
        if lifetime_s >= self.ttl_s:
            raise LocalError(f"an invocation of {lifetime_s:g} s does not fit a {self.ttl_s:g} s voucher")
        if self._request_id is None:
            self._request_id = f"{self.rng.getrandbits(96):024x}"
        voucher = await self.source(
            self.keys, budget_micro=self.budget_micro, ttl_s=self.ttl_s, request_id=self._request_id
        )
        if voucher.lessee_key != self.keys.public.raw:
            raise LocalError("the anchor issued a voucher for another key")
        self._request_id = None  # answered: the next renewal is a new request
        self._voucher, self._spent_micro = voucher, 0
        self.vouchers_bought += 1
        self._save()

"""Paid invocations on a node: vouchers checked offline, and never more work accepted than they cover.

`VoucherBook` is the sans-I/O core. Before an invocation runs, `authorize` checks the voucher the
request carries: signed by the anchor's key, issued to the key that signed the request, not expired
(with room for the invocation to finish), with the lessee's spend ticket for this very request
(`p2pfaas.ledger.tickets`: the anchor pays no receipt without it), and with enough budget left *on
this node* for the most the invocation could cost (its timeout at the node's prices, plus the
anchor's fee). That maximum is reserved; when the receipt is signed, `charged` replaces the
reservation with the real charge. So the sum of what this node bills a voucher never exceeds its
budget. (Other nodes bill it too; the anchor pays in arrival order and refuses what is over, so a
node that accepts a voucher another node has drained loses that work: the price of checking
offline.)

Requests without a voucher keep the node's unpaid rule: only the function's owner may run it
(a devnet convenience), unless `require_voucher` is set.

`NodePayments` is the daemon's adapter: it learns the anchor key over HTTP, prices the worst case
with the node's `Prices`, passes receipts to a `ReceiptSender`, and keeps what it charged each
voucher in a `SpendLog` so that a restarted node does not accept a spent budget again.
Not here: metering (issue #4).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

from p2pfaas import rpc, signing
from p2pfaas.clock import wall_time
from p2pfaas.errors import P2PFaaSError, Refused, SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.ledger.tickets import request_ticket_problem
from p2pfaas.ledger.wire import AnchorKey
from p2pfaas.messages import BundleHeader, InvokeRequest, Receipt, Voucher
from p2pfaas.node.pricing import Prices
from p2pfaas.node.receipts import ReceiptSender
from p2pfaas.rpc import Forbidden

__all__ = [
    "NodePayments",
    "PaymentRequired",
    "SpendLog",
    "VoucherBook",
    "max_price_micro",
]

log = logging.getLogger(__name__)

FORGET_AFTER_S = 3600.0  # keep a voucher's spend this long past its expiry, then drop it


class PaymentRequired(Refused):
    """HTTP 402: the request's voucher cannot pay for it (missing, spent, or expiring)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=402)


@dataclass
class _Spend:
    budget_micro: int
    expires_at: float
    charged_micro: int = 0  # receipts signed
    reserved: dict[str, int] = field(default_factory=dict)  # invocation id -> most it may cost

    @property
    def committed_micro(self) -> int:
        return self.charged_micro + sum(self.reserved.values())


@dataclass
class VoucherBook:
    """Per-voucher spend on this node. Fed `now` by its caller; no clock, no I/O."""

    anchor_key: bytes
    fees: FeePolicy
    expiry_margin_s: float = 5.0  # a voucher must outlive the invocation's timeout by this much
    require_voucher: bool = False
    _spends: dict[str, _Spend] = field(default_factory=dict)
    _invocations: dict[str, str] = field(default_factory=dict)  # invocation id -> voucher id

    def authorize(
        self,
        request: InvokeRequest,
        header: BundleHeader,
        caller_key: bytes,
        *,
        max_price_micro: int,
        now: float,
    ) -> None:
        """Accept `request` (reserving its most costly outcome) or raise Forbidden/PaymentRequired."""
        voucher = request.voucher
        if voucher is None:
            if self.require_voucher:
                raise PaymentRequired("this node runs paid invocations only: attach a voucher")
            if header.signer != caller_key:
                raise Forbidden("only the function's owner may invoke it without a voucher")
            return
        self._check(voucher, caller_key)
        problem = request_ticket_problem(request, caller_key)
        if problem is not None:  # the anchor would refuse this receipt: never run it for free
            raise Forbidden(f"the paid request {problem}")
        if now + request.timeout_s + self.expiry_margin_s > voucher.expires_at:
            raise PaymentRequired(f"voucher {voucher.voucher_id} expires before this invocation could finish")
        self._forget_old(now)
        spend = self._spends.setdefault(voucher.voucher_id, _Spend(voucher.budget_micro, voucher.expires_at))
        if request.invocation_id in spend.reserved or self._invocations.get(request.invocation_id):
            return  # a retry or forward of an invocation already accepted: reserved once
        cost = self.fees.charge_micro(max_price_micro)
        if spend.committed_micro + cost > spend.budget_micro:
            left = spend.budget_micro - spend.committed_micro
            raise PaymentRequired(
                f"voucher {voucher.voucher_id} has {left} micro-credits left on this node; "
                f"this invocation may cost up to {cost}"
            )
        spend.reserved[request.invocation_id] = cost
        self._invocations[request.invocation_id] = voucher.voucher_id
        assert spend.committed_micro <= spend.budget_micro

    def charged(self, receipt: Receipt) -> int:
        """The invocation ran and its receipt says what it costs: settle the reservation to that.

        Returns what was charged to the voucher (0 if it held no reservation for this receipt).
        """
        spend = self._spends.get(receipt.voucher_id)
        if spend is None or receipt.invocation_id not in spend.reserved:
            return 0
        reserved = spend.reserved.pop(receipt.invocation_id)
        # The executor bounds usage by the timeout, so the real charge fits the reservation.
        charge = min(reserved, self.fees.charge_micro(receipt.price_micro))
        spend.charged_micro += charge
        return charge

    def restore(self, voucher_id: str, *, budget_micro: int, expires_at: float, charged_micro: int) -> None:
        """What a previous run of this node charged to a voucher (from its spend log)."""
        spend = self._spends.setdefault(voucher_id, _Spend(budget_micro, expires_at))
        spend.charged_micro += charged_micro

    def spend_of(self, voucher_id: str) -> tuple[int, float] | None:
        """(budget, expiry) of a voucher this node has accepted."""
        spend = self._spends.get(voucher_id)
        return None if spend is None else (spend.budget_micro, spend.expires_at)

    def release(self, invocation_id: str) -> None:
        """The invocation never ran (refused later, crashed before starting): free its reservation."""
        voucher_id = self._invocations.pop(invocation_id, None)
        spend = self._spends.get(voucher_id or "")
        if spend is not None:
            spend.reserved.pop(invocation_id, None)

    def remaining_micro(self, voucher_id: str) -> int | None:
        spend = self._spends.get(voucher_id)
        return None if spend is None else spend.budget_micro - spend.committed_micro

    def _check(self, voucher: Voucher, caller_key: bytes) -> None:
        if voucher.signer != self.anchor_key:
            raise Forbidden("the voucher is not signed by this network's anchor")
        try:
            signing.verify(voucher)
        except SignatureError:
            raise Forbidden("the voucher's signature does not verify") from None
        if voucher.lessee_key != caller_key:
            raise Forbidden("the voucher was issued to another key than the one that signed the request")

    def _forget_old(self, now: float) -> None:
        stale = [vid for vid, spend in self._spends.items() if spend.expires_at + FORGET_AFTER_S < now]
        for voucher_id in stale:
            for invocation_id in self._spends.pop(voucher_id).reserved:
                self._invocations.pop(invocation_id, None)
        if len(self._invocations) > 100_000:  # ids of settled invocations: only for dedupe
            for invocation_id in list(self._invocations)[:50_000]:
                del self._invocations[invocation_id]


class SpendLog:
    """What this node charged to each voucher, on disk, so a restarted node does not accept again
    the budget it already used. One JSON line per charge; `load` sums them, drops vouchers long
    expired, and rewrites the file compacted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, voucher_id: str, *, budget_micro: int, expires_at: float, charge_micro: int) -> None:
        line = json.dumps({"v": voucher_id, "b": budget_micro, "e": expires_at, "c": charge_micro})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(line + "\n")

    def load(self, *, now: float) -> dict[str, tuple[int, float, int]]:
        """voucher id -> (budget, expiry, charged in total), for vouchers that still matter."""
        spent: dict[str, tuple[int, float, int]] = {}
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return spent
        for line in lines:
            try:
                entry = json.loads(line)
                voucher_id, budget, expires_at, charge = (
                    str(entry["v"]),
                    int(entry["b"]),
                    float(entry["e"]),
                    int(entry["c"]),
                )
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash
            if expires_at + FORGET_AFTER_S < now:
                continue
            _, _, before = spent.get(voucher_id, (budget, expires_at, 0))
            spent[voucher_id] = (budget, expires_at, before + charge)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(
            "".join(json.dumps({"v": v, "b": b, "e": e, "c": c}) + "\n" for v, (b, e, c) in spent.items())
        )
        temporary.replace(self.path)
        return spent


def max_price_micro(prices: Prices, *, timeout_s: float, memory_mb: int, cpus: float) -> int:
    """The most an invocation can cost at `prices`: all its CPU share and memory for its whole timeout.

    Doubled, plus a second: the executor stops a function at its timeout, but stopping takes a
    moment and the receipt bills what was metered, which the reservation must still cover.
    """
    wall_ms = int((2 * timeout_s + 1) * 1000)
    return prices.charge_micro(cpu_ms=int(wall_ms * cpus) + 1, peak_memory_mb=memory_mb, wall_ms=wall_ms)


class NodePayments:
    """A node's side of the ledger, for the daemon: the voucher authorizer and the receipt sender.

    `async with NodePayments(...) as payments:` learns the anchor's voucher key (retrying in the
    background while the anchor is unreachable; until then, requests carrying a voucher are
    refused with 402 and owners still run their own functions unpaid) and runs a `ReceiptSender`
    whose journal lives in the node's work directory. Hand `authorize` and `on_receipt` to
    `NodeService`.
    """

    def __init__(
        self,
        *,
        anchor_url: str,
        keys: KeyPair,
        session: aiohttp.ClientSession,
        work_dir: Path,
        prices: Prices,
        cpus_per_instance: float,
        rng: random.Random,
        require_voucher: bool = False,
    ) -> None:
        self.anchor_url = anchor_url
        self.session = session
        self.prices = prices
        self.cpus = cpus_per_instance
        self.rng = rng
        self.require_voucher = require_voucher
        self.book: VoucherBook | None = None
        self.sender = ReceiptSender(
            anchor_url=anchor_url,
            keys=keys,
            session=session,
            journal_path=work_dir / "receipts.journal",
            rng=rng,
        )
        self.spend_log = SpendLog(work_dir / "voucher-spend.log")
        self._key_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def ready(self) -> None:
        """Return once the anchor's voucher key is known (vouchers are accepted from then on)."""
        await self._ready.wait()

    async def __aenter__(self) -> NodePayments:
        await self.sender.__aenter__()
        self._key_task = asyncio.get_running_loop().create_task(self._learn_anchor_key(), name="anchor key")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._key_task is not None
        self._key_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._key_task
        await self.sender.__aexit__(exc_type, exc, tb)

    async def _learn_anchor_key(self) -> None:
        failures = 0
        while self.book is None:
            try:
                key = await rpc.call(
                    self.session, "GET", f"{self.anchor_url}/v1/anchor-key", AnchorKey, timeout_s=10
                )
            except P2PFaaSError as error:
                failures += 1
                pause = min(60.0, 0.5 * 2 ** min(failures, 7)) * self.rng.uniform(0.5, 1.0)
                log.warning("cannot learn the anchor's voucher key yet (retrying in %.1fs): %s", pause, error)
                await asyncio.sleep(pause)
                continue
            book = VoucherBook(
                anchor_key=key.public_key, fees=FeePolicy(key.fee_ppm), require_voucher=self.require_voucher
            )
            for voucher_id, (budget, expires_at, charged) in self.spend_log.load(now=wall_time()).items():
                book.restore(voucher_id, budget_micro=budget, expires_at=expires_at, charged_micro=charged)
            self.book = book
            self._ready.set()

    def authorize(self, request: InvokeRequest, header: BundleHeader, caller_key: bytes) -> None:
        if self.book is None:
            if request.voucher is not None or self.require_voucher:
                raise PaymentRequired("this node has not learned the anchor's voucher key yet; try another")
            if header.signer != caller_key:
                raise Forbidden("only the function's owner may invoke it without a voucher")
            return
        manifest = header.manifest
        timeout_s = min(request.timeout_s, manifest.timeout_s)
        cost = max_price_micro(self.prices, timeout_s=timeout_s, memory_mb=manifest.memory_mb, cpus=self.cpus)
        self.book.authorize(request, header, caller_key, max_price_micro=cost, now=wall_time())

    def on_receipt(self, receipt: Receipt) -> None:
        """Settle this node's view of the voucher, and send the receipt if there is anything to pay."""
        if self.book is not None:
            charge = self.book.charged(receipt)
            spend = self.book.spend_of(receipt.voucher_id)
            if charge and spend is not None:
                self.spend_log.append(
                    receipt.voucher_id, budget_micro=spend[0], expires_at=spend[1], charge_micro=charge
                )
        if receipt.voucher_id and receipt.price_micro > 0:
            self.sender.submit(receipt)

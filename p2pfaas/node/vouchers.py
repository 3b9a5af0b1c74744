"""Paid invocations on a node: vouchers checked offline, and never more work accepted than they cover.

`VoucherBook` is the sans-I/O core. Before an invocation runs, `authorize` checks the voucher the
request carries: signed by the anchor's key, issued to the key that signed the request, not expired
(with room for the invocation to finish), with the lessee's spend ticket for this very request
(`p2pfaas.tickets`: the anchor pays no receipt without it), and with enough budget left *on
this node* for the most the invocation could cost (its timeout at the node's prices, plus the
anchor's fee). That maximum is reserved; when the receipt is signed, `charged` replaces the
reservation with the real charge. So the sum of what this node bills a voucher never exceeds its
budget. (Other nodes bill it too; the anchor pays in arrival order and refuses what is over, so a
node that accepts a voucher another node has drained loses that work: the price of checking
offline.)

The spend ticket must also name this node as its payee, or come with the delegations of the
nodes that forwarded it here (`p2pfaas.tickets.chain_problem`): the anchor pays no receipt
of a node the call was not sent to. A ticket whose price cap is below what the invocation may cost
at this node's prices is refused (402), so the node never runs work the anchor would not pay for;
the receipt's price is never over the cap.

Requests without a voucher are refused (402) unless the volunteer opts in with an `UnpaidPolicy`:
a function's owner running its own functions (a devnet), or an allow-list of lessee keys (the
volunteer's own). The node's adverts say which (`UnpaidPolicy.describe`).

`NodePayments` is the daemon's adapter: it learns the anchor key over HTTP, prices the worst case
with the node's `Prices`, passes receipts to a `ReceiptSender`, and keeps what it charged each
voucher in a `SpendLog` so that a restarted node does not accept a spent budget again.

What a voucher has committed on this node (charged, and reserved by each worker process) lives in a
`SpendStore`: `LocalSpends` (a dict) for a one-process node, or `p2pfaas.node.shared.SharedSpends`
when several worker processes serve one node and must share each budget. A reservation itself
(invocation id -> most it may cost) stays in the process that made it: the node's exactly-once table
hands an id to one process only. The store keeps each worker's reserved sum apart, so that when a
worker process dies its reservations can be dropped with it (`SharedSpends.release_worker`).
Not here: metering (issue #4).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

import aiohttp

from p2pfaas import rpc, signing
from p2pfaas.clock import wall_time
from p2pfaas.errors import P2PFaaSError, Refused, SignatureError
from p2pfaas.identity import KeyPair, PublicKey
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.ledger.wire import AnchorKey
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import BundleHeader, Delegation, InvokeRequest, Receipt, Voucher
from p2pfaas.node.receipts import ReceiptSender
from p2pfaas.pricing import Prices
from p2pfaas.rpc import Forbidden
from p2pfaas.tickets import request_ticket_problem

__all__ = [
    "LocalSpends",
    "NodePayments",
    "PaymentRequired",
    "SpendLog",
    "SpendStore",
    "UnpaidPolicy",
    "VoucherBook",
    "VoucherSpend",
    "max_price_micro",
]

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

    def settle(self, voucher_id: str, *, reserved_micro: int, charge_micro: int, worker: int) -> None:
        """A reservation of `worker` became a charge (at most what was reserved)."""
        ...

    def release(self, voucher_id: str, *, reserved_micro: int, worker: int) -> None:
        """A reservation of `worker` is not needed any more (the invocation never ran)."""
        ...

    def restore(
        self, voucher_id: str, *, budget_micro: int, expires_at: float, charged_micro: int, now: float
    ) -> None:
        """Add what a previous run of this node charged to the voucher."""
        ...

    def get(self, voucher_id: str) -> VoucherSpend | None: ...

    def forget(self, *, now: float) -> int:
        """Drop vouchers expired more than FORGET_AFTER_S before `now`; how many."""
        ...


@dataclass
class _Total:
    budget_micro: int
    expires_at: float
    charged_micro: int = 0
    reserved_micro: int = 0


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

    def settle(self, voucher_id: str, *, reserved_micro: int, charge_micro: int, worker: int) -> None:
        assert worker == 0 and 0 <= charge_micro <= reserved_micro, (worker, charge_micro, reserved_micro)
        total = self._totals.get(voucher_id)
        if total is not None:
            assert total.reserved_micro >= reserved_micro, (voucher_id, total, reserved_micro)
            total.reserved_micro -= reserved_micro
            total.charged_micro += charge_micro

    def release(self, voucher_id: str, *, reserved_micro: int, worker: int) -> None:
        self.settle(voucher_id, reserved_micro=reserved_micro, charge_micro=0, worker=worker)

    def restore(
        self, voucher_id: str, *, budget_micro: int, expires_at: float, charged_micro: int, now: float
    ) -> None:
        self._totals.setdefault(voucher_id, _Total(budget_micro, expires_at)).charged_micro += charged_micro

    def get(self, voucher_id: str) -> VoucherSpend | None:
        total = self._totals.get(voucher_id)
        if total is None:
            return None
        committed = total.charged_micro + total.reserved_micro
        return VoucherSpend(total.budget_micro, total.expires_at, committed, total.charged_micro)

    def forget(self, *, now: float) -> int:
        stale = [vid for vid, total in self._totals.items() if total.expires_at + FORGET_AFTER_S < now]
        for voucher_id in stale:
            del self._totals[voucher_id]
        return len(stale)


@dataclass(frozen=True)
class UnpaidPolicy:
    """Who may run functions on this node without a voucher. The default: nobody.

    `owners`: a function's owner may run its own functions unpaid (a devnet, where the volunteer
    and the lessee are the same people). `keys`: ids of lessee keys (`KeyPair.key_id`) that may
    run anything unpaid, e.g. the volunteer's own.
    """

    owners: bool = False
    keys: frozenset[str] = frozenset()

    def check(self, header: BundleHeader, caller_key: bytes) -> None:
        """Return if `caller_key` may run `header`'s function unpaid here, else raise PaymentRequired."""
        if self.owners and header.signer == caller_key:
            return
        if self.keys and PublicKey(caller_key).key_id in self.keys:
            return
        if self.owners:  # a devnet: a stranger is not let in (403), rather than asked to pay
            raise Forbidden("only the function's owner may invoke it without a voucher")
        raise PaymentRequired("this node runs paid invocations only: attach a voucher")

    def describe(self) -> str:
        """What the node's adverts say: "none", "owners", "keys", or "owners+keys"."""
        parts = [name for name, on in (("owners", self.owners), ("keys", bool(self.keys))) if on]
        return "+".join(parts) or "none"


@dataclass(frozen=True)
class _Hold:
    voucher_id: str
    cost_micro: int
    expires_at: float


@dataclass
class VoucherBook:
    """Per-voucher spend on this node. Fed `now` by its caller; no clock, no I/O.

    Several books (one per worker process) may share one `spends` store: each keeps only the
    reservations it made, and the store keeps their sum in the book's `worker` column (the index of
    its process), which the node drops when that process dies.
    """

    anchor_key: bytes
    fees: FeePolicy
    node_id: str  # this node's: the payee (or the end of the delegations) a paid request must name
    expiry_margin_s: float = 5.0  # a voucher must outlive the invocation's timeout by this much
    unpaid: UnpaidPolicy = field(default_factory=UnpaidPolicy)
    spends: SpendStore = field(default_factory=LocalSpends)
    worker: int = 0  # this process's index among the node's worker processes
    _holds: dict[str, _Hold] = field(default_factory=dict)  # invocation id -> its reservation
    _invocations: dict[str, str] = field(default_factory=dict)  # invocation id -> voucher id
    _forget_at: float = 0.0  # `now` of the next look for long-expired vouchers

    def authorize(
        self,
        request: InvokeRequest,
        header: BundleHeader,
        caller_key: bytes,
        *,
        max_price_micro: int,
        now: float,
        delegations: tuple[Delegation, ...] = (),
    ) -> None:
        """Accept `request` (reserving its most costly outcome, within the lessee's cap), reaching
        this node through `delegations`, or raise Forbidden/PaymentRequired."""
        voucher = request.voucher
        if voucher is None:
            self.unpaid.check(header, caller_key)
            return
        self._check(voucher, caller_key)
        problem = request_ticket_problem(request, caller_key, node_id=self.node_id, delegations=delegations)
        if problem is not None:  # the anchor would refuse this receipt: never run it for free
            raise Forbidden(f"the paid request {problem}")
        assert request.ticket is not None
        if request.ticket.max_price_micro < max_price_micro:
            # The node would run it at a loss (the anchor pays no more than the cap), or for free.
            raise PaymentRequired(
                f"the spend ticket caps this invocation at {request.ticket.max_price_micro} micro-credits, "
                f"and at this node's prices it may cost up to {max_price_micro}: raise the wallet's price "
                "ceilings, or use a cheaper node"
            )
        if now + request.timeout_s + self.expiry_margin_s > voucher.expires_at:
            raise PaymentRequired(f"voucher {voucher.voucher_id} expires before this invocation could finish")
        self._forget_old(now)
        if request.invocation_id in self._holds:
            return  # a retry or forward of an invocation accepted and running: reserved once
        if request.invocation_id in self._invocations:
            # It ran here and was charged; the anchor pays an id once, so running it again (with a
            # new payload, once the router's cache of results has forgotten it) would be free.
            raise Refused("this invocation id already ran on this node; use a new id", status=409)
        cost = self.fees.charge_micro(max_price_micro)
        left = self.spends.reserve(
            voucher.voucher_id,
            budget_micro=voucher.budget_micro,
            expires_at=voucher.expires_at,
            cost_micro=cost,
            worker=self.worker,
            now=now,
        )
        if left is not None:
            raise PaymentRequired(
                f"voucher {voucher.voucher_id} has {left} micro-credits left on this node; "
                f"this invocation may cost up to {cost}"
            )
        self._holds[request.invocation_id] = _Hold(voucher.voucher_id, cost, voucher.expires_at)
        self._invocations[request.invocation_id] = voucher.voucher_id

    def charged(self, receipt: Receipt) -> int:
        """The invocation ran and its receipt says what it costs: settle the reservation to that.

        Returns what was charged to the voucher (0 if it held no reservation for this receipt).
        """
        hold = self._holds.get(receipt.invocation_id)
        if hold is None or hold.voucher_id != receipt.voucher_id:
            return 0
        del self._holds[receipt.invocation_id]
        # The executor bounds usage by the timeout, so the real charge fits the reservation.
        charge = min(hold.cost_micro, self.fees.charge_micro(receipt.price_micro))
        self.spends.settle(
            hold.voucher_id, reserved_micro=hold.cost_micro, charge_micro=charge, worker=self.worker
        )
        return charge

    def spend_of(self, voucher_id: str) -> tuple[int, float] | None:
        """(budget, expiry) of a voucher this node has accepted."""
        spend = self.spends.get(voucher_id)
        return None if spend is None else (spend.budget_micro, spend.expires_at)

    def release(self, invocation_id: str) -> None:
        """The invocation never ran (refused later, crashed before starting): free its reservation."""
        self._invocations.pop(invocation_id, None)
        hold = self._holds.pop(invocation_id, None)
        if hold is not None:
            self.spends.release(hold.voucher_id, reserved_micro=hold.cost_micro, worker=self.worker)

    def remaining_micro(self, voucher_id: str) -> int | None:
        spend = self.spends.get(voucher_id)
        return None if spend is None else spend.remaining_micro

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
        if now >= self._forget_at:
            self._forget_at = now + FORGET_EVERY_S
            self.spends.forget(now=now)
            stale = [iid for iid, hold in self._holds.items() if hold.expires_at + FORGET_AFTER_S < now]
            for invocation_id in stale:
                del self._holds[invocation_id]
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
        """Add one charge. Safe from several processes at once: one O_APPEND write() of a whole line."""
        line = json.dumps({"v": voucher_id, "b": budget_micro, "e": expires_at, "c": charge_micro}) + "\n"
        data = line.encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):  # a full disk; `load` skips the torn line
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")

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
    refused with 402 and unpaid ones follow `unpaid`) and runs a `ReceiptSender`
    whose journal lives in the node's work directory. Hand `authorize` and `on_receipt` to
    `NodeService`.

    A node of several worker processes gives every process's `NodePayments` the same `spends`
    (`SharedTables.spends`), its own `worker` index (the primary's is 0), and `restore=True` only in
    the primary: entering it loads (and compacts) the spend log into the store, so enter the
    primary's before starting the workers. All of them append to the same log (in `work_dir`); each
    keeps its receipt journal in its own `journal_dir`.
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
        unpaid: UnpaidPolicy | None = None,
        spends: SpendStore | None = None,
        worker: int = 0,
        restore: bool = True,
        journal_dir: Path | None = None,
    ) -> None:
        self.anchor_url = anchor_url
        self.session = session
        self.prices = prices
        self.cpus = cpus_per_instance
        self.rng = rng
        self.unpaid = unpaid or UnpaidPolicy()
        self.node_id = keys.key_id
        self.spends: SpendStore = LocalSpends() if spends is None else spends
        self.worker = worker
        self.restore = restore
        self.book: VoucherBook | None = None
        self.sender = ReceiptSender(
            anchor_url=anchor_url,
            keys=keys,
            session=session,
            journal_path=(work_dir if journal_dir is None else journal_dir) / "receipts.journal",
            rng=rng,
        )
        self.spend_log = SpendLog(work_dir / "voucher-spend.log")
        self._tasks = TaskSet()
        self._ready = asyncio.Event()

    async def ready(self) -> None:
        """Return once the anchor's voucher key is known (vouchers are accepted from then on)."""
        await self._ready.wait()

    async def __aenter__(self) -> NodePayments:
        if self.restore:  # now, not once the anchor key is known: a sibling may know it sooner
            now = wall_time()
            for voucher_id, (budget, expires_at, charged) in self.spend_log.load(now=now).items():
                try:
                    self.spends.restore(
                        voucher_id, budget_micro=budget, expires_at=expires_at, charged_micro=charged, now=now
                    )
                except PaymentRequired as full:
                    log.error("cannot restore what voucher %s spent: %s", voucher_id, full.reason)
        await self.sender.__aenter__()
        self._tasks.spawn(self._learn_anchor_key(), name="anchor key")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._tasks.cancel()
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
            self.book = VoucherBook(
                anchor_key=key.public_key,
                fees=FeePolicy(key.fee_ppm),
                node_id=self.node_id,
                unpaid=self.unpaid,
                spends=self.spends,
                worker=self.worker,
            )
            self._ready.set()

    def authorize(
        self,
        request: InvokeRequest,
        header: BundleHeader,
        caller_key: bytes,
        delegations: tuple[Delegation, ...] = (),
    ) -> None:
        if self.book is None:
            if request.voucher is not None:
                raise PaymentRequired("this node has not learned the anchor's voucher key yet; try another")
            self.unpaid.check(header, caller_key)
            return
        manifest = header.manifest
        timeout_s = min(request.timeout_s, manifest.timeout_s)
        cost = max_price_micro(self.prices, timeout_s=timeout_s, memory_mb=manifest.memory_mb, cpus=self.cpus)
        self.book.authorize(
            request, header, caller_key, max_price_micro=cost, now=wall_time(), delegations=delegations
        )

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

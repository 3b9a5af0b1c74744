"""`NodePayments`: the daemon's side of payment. It learns the anchor's voucher key over HTTP, prices
the worst case with the node's `Prices`, hands receipts to a `ReceiptSender`, keeps a `SpendLog`,
and keeps the lessees' channel tickets in a `ChannelStore` (`offer_channels`, the `/v1/channels` route).
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from types import TracebackType

import aiohttp

from p2pfaas import rpc
from p2pfaas.clock import wall_time
from p2pfaas.errors import P2PFaaSError
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.ledger.wire import AnchorKey
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import BundleHeader, ChannelTickets, Delegation, InvokeRequest, Receipt
from p2pfaas.node.payments.book import (
    UnpaidPolicy,
    VoucherBook,
    max_price_micro,
)
from p2pfaas.node.payments.channel_store import ChannelStore
from p2pfaas.node.payments.receipts import ReceiptSender
from p2pfaas.node.payments.spend_log import SpendLog
from p2pfaas.node.payments.spends import LocalSpends, PaymentRequired, SpendStore
from p2pfaas.pricing import Prices
from p2pfaas.rpc import Forbidden

log = logging.getLogger(__name__)


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
        self.channels = ChannelStore(work_dir / "channels", node_id=self.node_id)
        self.sender = ReceiptSender(
            anchor_url=anchor_url,
            keys=keys,
            session=session,
            journal_path=(work_dir if journal_dir is None else journal_dir) / "receipts.journal",
            rng=rng,
            channel_tickets=self.channels.tickets,
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
                    # Its calls' prices are not in the log: count them paid up to what the lessee
                    # signed (a debt from before the restart is forgotten, a surplus pays nothing new).
                    priced = min(charged, self.channels.signed_micro(voucher_id))
                    self.spends.restore(
                        voucher_id, budget_micro=budget, expires_at=expires_at, charged_micro=charged,
                        now=now, priced_micro=priced,
                    )  # fmt: skip
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
                signed_micro=self.channels.signed_micro,
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

    def offer_channels(self, offer: ChannelTickets) -> int:
        """Keep the lessee's channel tickets of `offer` that beat the ones held (how many did), and
        send again the receipts they now cover. Raises Forbidden for a forged ticket or voucher."""
        if self.book is None:
            raise PaymentRequired("this node has not learned the anchor's voucher key yet")
        vouchers = {voucher.voucher_id: voucher for voucher in offer.vouchers}
        kept: list[str] = []
        for ticket in offer.tickets:
            voucher = vouchers.get(ticket.voucher_id)
            if voucher is None:
                raise Forbidden(f"the channel ticket of voucher {ticket.voucher_id[:64]!r} came without it")
            served = self.book.spend_of(ticket.voucher_id) is not None
            if self.channels.offer(ticket, voucher, anchor_key=self.book.anchor_key, served=served):
                kept.append(ticket.voucher_id)
        if kept:
            self.sender.covered(kept)
        return len(kept)

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

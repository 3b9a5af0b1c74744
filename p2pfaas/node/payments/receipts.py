"""Getting a node's receipts to the anchor: batched, signed, retried, and kept on disk until answered.

`ReceiptQueue` is the sans-I/O core: receipts go in with `add`; `next_batch(now)` says what to send
and when (a full batch at once, a partial one after `linger_s`, nothing while backing off);
`acknowledged` drops the ids the anchor answered (paid, paid before, or refused for good) and
`failed` backs off exponentially with jitter. Receipts the anchor answers `unsigned` (the lessee's
channel ticket does not cover them yet, `p2pfaas.channels`) wait (`unsigned`): they go again once a
newer ticket for their voucher arrives (`covered`), else after a growing pause, and are given up
after `MAX_UNSIGNED_TRIES`. `ReceiptSender` is the adapter: it keeps the queue
in a journal file in the node's state directory (appended on every receipt, rewritten after every
answer), so a restarted node resends what was not answered; it signs each batch with the node key
and posts it to the anchor's `/v1/receipts` with the node's latest channel ticket of each voucher
in the batch. Sending twice is harmless: the anchor settles each invocation id once.
`NodeService.on_receipt` is `ReceiptSender.submit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

from p2pfaas import codec, rpc, signing
from p2pfaas.backoff import Backoff
from p2pfaas.errors import DecodeError, P2PFaaSError
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.wire import BatchResult
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import ChannelTicket, Receipt, ReceiptBatch

__all__ = ["ReceiptJournal", "ReceiptQueue", "ReceiptSender"]

log = logging.getLogger(__name__)

MAX_BATCH = 512  # receipts per request (the message allows 1024)
MAX_UNSIGNED_TRIES = 20  # sends of a receipt the lessee has not signed for, before it is given up
UNSIGNED_PAUSE_S = 1.0  # the first pause before an unsigned receipt goes again (doubling, to 60 s)


@dataclass
class ReceiptQueue:
    """Receipts not yet answered by the anchor, in arrival order. No clock, no I/O."""

    rng: random.Random
    max_batch: int = MAX_BATCH
    linger_s: float = 1.0  # how long a partial batch waits for company
    base_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    pending: dict[str, Receipt] = field(default_factory=dict)  # invocation id -> receipt
    waiting: dict[str, tuple[Receipt, int]] = field(default_factory=dict)  # unsigned: (receipt, tries)
    _waiting_at: float | None = None  # when the waiting receipts go again
    _oldest_at: float | None = None
    _failures: int = 0
    _retry_at: float = 0.0
    _tries: dict[str, int] = field(default_factory=dict)  # unsigned answers so far, of pending ids
    in_flight: bool = False

    def add(self, receipt: Receipt, now: float) -> None:
        if receipt.invocation_id in self.pending or receipt.invocation_id in self.waiting:
            return
        self.pending[receipt.invocation_id] = receipt
        if self._oldest_at is None:
            self._oldest_at = now

    def unsigned(self, invocation_ids: Iterable[str], now: float) -> list[Receipt]:
        """The anchor answered these `unsigned`: they wait for a newer channel ticket. Returns the
        receipts given up (tried `MAX_UNSIGNED_TRIES` times)."""
        given_up: list[Receipt] = []
        for invocation_id in invocation_ids:
            receipt = self.pending.pop(invocation_id, None)
            if receipt is None:
                continue
            tries = self._tries.pop(invocation_id, 0) + 1
            if tries >= MAX_UNSIGNED_TRIES:
                given_up.append(receipt)
            else:
                self.waiting[invocation_id] = (receipt, tries)
        if self.waiting:
            tries = max(t for _, t in self.waiting.values())
            at = now + Backoff(UNSIGNED_PAUSE_S, 60.0).pause_s(tries)
            self._waiting_at = at if self._waiting_at is None else min(self._waiting_at, at)
        self._oldest_at = now if self.pending else None
        return given_up

    def covered(self, voucher_ids: Iterable[str], now: float) -> None:
        """Newer channel tickets arrived for `voucher_ids`: their waiting receipts go again now."""
        wanted = set(voucher_ids)
        for invocation_id, (receipt, tries) in list(self.waiting.items()):
            if receipt.voucher_id in wanted:
                self._requeue(invocation_id, receipt, tries, now)

    def _requeue(self, invocation_id: str, receipt: Receipt, tries: int, now: float) -> None:
        del self.waiting[invocation_id]
        self._tries[invocation_id] = tries
        self.pending[invocation_id] = receipt
        if self._oldest_at is None:
            self._oldest_at = now - self.linger_s  # due at once

    def _wake_waiting(self, now: float, *, all_now: bool = False) -> None:
        if self._waiting_at is not None and (all_now or now >= self._waiting_at):
            self._waiting_at = None
            for invocation_id, (receipt, tries) in list(self.waiting.items()):
                self._requeue(invocation_id, receipt, tries, now)

    def send_at(self) -> float | None:
        """When the next batch is due (maybe already), or None with nothing to send."""
        if not self.pending and self._waiting_at is not None and not self.in_flight:
            return self._waiting_at
        if not self.pending or self.in_flight or self._oldest_at is None:
            return None
        due = self._oldest_at if len(self.pending) >= self.max_batch else self._oldest_at + self.linger_s
        return max(due, self._retry_at)

    def next_batch(self, now: float, *, flush: bool = False) -> list[Receipt] | None:
        """The receipts to send now, or None if nothing is due. `flush` ignores the linger."""
        self._wake_waiting(now, all_now=flush)
        due = self.send_at()
        if due is None or not self.pending or (now < due and not (flush and now >= self._retry_at)):
            return None
        self.in_flight = True
        return list(self.pending.values())[: self.max_batch]

    def acknowledged(self, invocation_ids: Iterable[str], now: float) -> None:
        self.in_flight = False
        self._failures = 0
        self._retry_at = 0.0
        for invocation_id in invocation_ids:
            self.pending.pop(invocation_id, None)
            self._tries.pop(invocation_id, None)
        self._oldest_at = now if self.pending else None

    def failed(self, now: float) -> float:
        """The send failed; returns the pause before the next try (capped exponential, jittered)."""
        self.in_flight = False
        self._failures += 1
        pause = Backoff(self.base_backoff_s, self.max_backoff_s).pause_s(self._failures, self.rng)
        self._retry_at = now + pause
        return pause


class ReceiptJournal:
    """Unanswered receipts on disk: length-prefixed codec frames, appended and compacted.

    Appends go to the OS at once (a crashed process loses nothing it wrote); `rewrite` replaces the
    file atomically (write a temporary file, fsync, rename) after the anchor answers a batch.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> list[Receipt]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        receipts: list[Receipt] = []
        offset = 0
        while offset + 4 <= len(data):
            (size,) = struct.unpack_from(">I", data, offset)
            frame = data[offset + 4 : offset + 4 + size]
            if len(frame) < size:
                log.warning(
                    "receipt journal %s ends in a torn write; dropping its last %d bytes",
                    self.path,
                    len(frame),
                )
                break
            try:
                receipts.append(codec.decode_as(Receipt, frame))
            except DecodeError as error:
                log.warning("receipt journal %s: skipping an unreadable entry: %s", self.path, error)
            offset += 4 + size
        return receipts

    def append(self, receipt: Receipt) -> None:
        frame = codec.encode(receipt)
        with self.path.open("ab") as file:
            file.write(struct.pack(">I", len(frame)) + frame)

    def rewrite(self, receipts: Iterable[Receipt]) -> None:
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("wb") as file:
            for receipt in receipts:
                frame = codec.encode(receipt)
                file.write(struct.pack(">I", len(frame)) + frame)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(self.path)


class ReceiptSender:
    """Sends a node's receipts to the anchor. `async with ReceiptSender(...) as sender:`; then `submit`.

    On exit it makes one last attempt to send what is pending (bounded by `flush_timeout_s`); what
    is still unanswered stays in the journal for the next start.
    """

    def __init__(
        self,
        *,
        anchor_url: str,
        keys: KeyPair,
        session: aiohttp.ClientSession,
        journal_path: Path,
        rng: random.Random,
        clock: Callable[[], float] | None = None,
        linger_s: float = 1.0,
        max_batch: int = MAX_BATCH,
        timeout_s: float = 30.0,
        flush_timeout_s: float = 5.0,
        channel_tickets: Callable[[Sequence[str]], list[ChannelTicket]] = lambda voucher_ids: [],
    ) -> None:
        self.anchor_url = anchor_url
        self.keys = keys
        self.session = session
        self.journal = ReceiptJournal(journal_path)
        self.queue = ReceiptQueue(rng, max_batch=max_batch, linger_s=linger_s)
        self.clock = clock
        self.timeout_s = timeout_s
        self.flush_timeout_s = flush_timeout_s
        self.channel_tickets = channel_tickets  # the latest ticket of each voucher, from the node's store
        self.sent_batches = 0
        # What the anchor answered, for the node's metrics: receipts by result, and the node price paid.
        self.answered: dict[str, int] = {"paid": 0, "duplicate": 0, "refused": 0, "given_up": 0}
        self.earned_micro = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._tasks = TaskSet()

    def _now(self) -> float:
        return self.clock() if self.clock else asyncio.get_running_loop().time()

    async def __aenter__(self) -> ReceiptSender:
        for receipt in self.journal.load():
            self.queue.add(receipt, self._now())
        if self.queue.pending:
            log.info("resending %d unanswered receipts from %s", len(self.queue.pending), self.journal.path)
        self._tasks.spawn(self._run(), name="receipt sender")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._tasks.cancel()
        self.queue.in_flight = False  # a send cut short by the cancellation: its receipts are pending
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.flush_timeout_s):
                await self.flush()

    def submit(self, receipt: Receipt) -> None:
        """Queue `receipt` (the `NodeService.on_receipt` hook); it is on disk when this returns."""
        if receipt.invocation_id in self.queue.pending:
            return
        self.journal.append(receipt)
        self.queue.add(receipt, self._now())
        self._drained.clear()
        self._wake.set()

    def covered(self, voucher_ids: Iterable[str]) -> None:
        """Newer channel tickets arrived for `voucher_ids`: send their unsigned receipts again."""
        self.queue.covered(voucher_ids, self._now())
        if self.queue.pending:
            self._drained.clear()
            self._wake.set()

    async def drained(self) -> None:
        """Return once every receipt submitted so far has been answered by the anchor (a receipt the
        lessee has not signed for yet counts as answered: it waits for a channel ticket)."""
        if self.queue.pending:
            self._drained.clear()
            await self._drained.wait()

    async def flush(self) -> None:
        """Send everything pending now, ignoring the linger (not the backoff), and the receipts
        waiting for a channel ticket once more; for shutdown and tests."""
        first = True
        while self.queue.pending or (first and self.queue.waiting):
            first = False
            batch = self.queue.next_batch(self._now(), flush=True)
            if batch is None:
                return
            if not await self._send(batch):
                return

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._now()
            batch = self.queue.next_batch(now)
            if batch is not None:
                await self._send(batch)
                continue
            due = self.queue.send_at()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if due is None else max(0.0, due - now)):
                    await self._wake.wait()

    async def _send(self, batch: list[Receipt]) -> bool:
        voucher_ids = sorted({r.voucher_id for r in batch})
        channels = tuple(self.channel_tickets(voucher_ids))
        signed = signing.sign(
            ReceiptBatch(tuple(batch), signer=b"", signature=b"", channels=channels), self.keys
        )
        url = f"{self.anchor_url}/v1/receipts"
        try:
            result = await rpc.call(self.session, "POST", url, BatchResult, signed, timeout_s=self.timeout_s)
        except P2PFaaSError as error:
            pause = self.queue.failed(self._now())
            log.warning("sending %d receipts failed (retrying in %.1fs): %s", len(batch), pause, error)
            return False
        answered = {*result.paid, *result.duplicate, *(r.invocation_id for r in result.refused)}
        for refused in result.refused:
            log.warning("the anchor will not pay invocation %s: %s", refused.invocation_id, refused.reason)
        paid = set(result.paid)
        self.earned_micro += sum(r.price_micro for r in batch if r.invocation_id in paid)
        self.answered["paid"] += len(paid)
        self.answered["duplicate"] += len(result.duplicate)
        self.answered["refused"] += len(result.refused)
        now = self._now()
        for receipt in self.queue.unsigned(result.unsigned, now):
            self.answered["given_up"] += 1
            log.warning(
                "giving up invocation %s: its lessee never signed for it on this node's channel",
                receipt.invocation_id,
            )
        # Receipts the anchor did not mention (it should mention all) stay queued and go again.
        self.queue.acknowledged([r.invocation_id for r in batch if r.invocation_id in answered], now)
        self.journal.rewrite([*self.queue.pending.values(), *(r for r, _ in self.queue.waiting.values())])
        self.sent_batches += 1
        if not self.queue.pending:
            self._drained.set()
        return True

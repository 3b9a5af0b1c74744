"""The lessee's side of payment channels: sign for each result received, and deliver the tickets.

`ChannelCourier.accept(receipt, voucher, node)` is called with the receipt of every paid result the
client used (`AsyncClient.paid_for`); `p2pfaas.channels.LesseeChannels` checks it and signs the
channel's next cumulative ticket, and the courier posts the latest ticket to the node that ran the
call (`POST /v1/channels`), one delivery per node at a time: tickets that arrive while one is on
its way are coalesced into the next (each supersedes the last, so only the newest matters). A
failed delivery is retried a few times with a pause; a ticket the node could not be given (it
vanished, or its home went dark) goes to the anchor instead (`POST /v1/channels` there), which
pays the node's receipts within it. `aclose` delivers what is pending within `flush_timeout_s`,
and hands the anchor the latest ticket of every channel (one request per 64 channels), so an
honest lessee that leaves never leaves a node unpaid for results it received, whatever became of
the tickets the node acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import aiohttp

from p2pfaas import rpc
from p2pfaas.channels import LesseeChannels
from p2pfaas.errors import P2PFaaSError
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import Ack, ChannelTicket, ChannelTickets, Receipt, Voucher

__all__ = ["ChannelCourier"]

log = logging.getLogger(__name__)

DELIVERY_TRIES = 4
DELIVERY_PAUSE_S = 0.5  # doubled after each failed try


@dataclass
class _Outbox:
    url: str
    ticket: ChannelTicket
    voucher: Voucher
    sent_seq: int = 0  # the highest seq this node has acknowledged
    anchored_seq: int = 0  # the highest seq the anchor has acknowledged


@dataclass
class ChannelCourier:
    keys: KeyPair
    session: aiohttp.ClientSession
    anchor_url: str
    timeout_s: float = 10.0
    flush_timeout_s: float = 5.0
    delivery_tries: int = DELIVERY_TRIES
    delivery_pause_s: float = DELIVERY_PAUSE_S
    book: LesseeChannels = field(init=False)
    delivered: int = 0  # tickets the nodes acknowledged (for tests and the CLI)
    anchored: int = 0  # tickets the anchor acknowledged instead
    _outboxes: dict[tuple[str, str], _Outbox] = field(default_factory=dict)  # (node, voucher) -> latest
    _busy: set[str] = field(default_factory=set)  # nodes with a delivery on its way
    _tasks: TaskSet = field(default_factory=TaskSet)

    def __post_init__(self) -> None:
        self.book = LesseeChannels(self.keys)

    def accept(
        self, receipt: Receipt, voucher: Voucher, *, node_id: str, node_url: str
    ) -> ChannelTicket | None:
        """Sign for `receipt` (of a result received from node `node_id` at `node_url`, paid by
        `voucher`) and send the new ticket; the ticket, or None when there is nothing to sign."""
        if voucher.voucher_id != receipt.voucher_id:
            return None
        ticket = self.book.accept(receipt)
        if ticket is None or ticket.node_id != node_id:
            return None
        key = (node_id, voucher.voucher_id)
        box = self._outboxes.get(key)
        if box is None:
            self._outboxes[key] = _Outbox(node_url, ticket, voucher)
        else:
            box.url, box.ticket = node_url, ticket
        if node_id not in self._busy:
            self._busy.add(node_id)
            self._tasks.spawn(self._deliver(node_id), name=f"channel tickets to {node_id[:12]}")
        return ticket

    async def idle(self) -> None:
        """Wait until no delivery is on its way (each ended delivered, or handed to the anchor)."""
        await self._tasks.wait()

    async def aclose(self) -> None:
        """Deliver what is pending (within `flush_timeout_s`), hand the anchor every channel's
        latest ticket (a node that acknowledged one may still lose it, or leave), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.flush_timeout_s):
                await self._tasks.wait()
        await self._tasks.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.flush_timeout_s):
                await self._to_anchor(list(self._outboxes.values()))

    def _due(self, node_id: str | None = None) -> list[_Outbox]:
        """The outboxes (of node `node_id`, or of every node) whose latest ticket no node acknowledged."""
        return [
            box
            for (node, _), box in self._outboxes.items()
            if node_id in (None, node) and box.ticket.seq > box.sent_seq
        ]

    async def _to_anchor(self, boxes: list[_Outbox]) -> None:
        """Hand the anchor the tickets of `boxes` it has not acknowledged yet (64 at a time)."""
        boxes = [box for box in boxes if box.ticket.seq > box.anchored_seq]
        for start in range(0, len(boxes), 64):
            chunk = boxes[start : start + 64]
            try:
                tickets = await self._post(self.anchor_url, chunk)
            except P2PFaaSError as error:
                log.warning("channel tickets not handed to the anchor either (%s)", error)
                return
            for box, ticket in zip(chunk, tickets, strict=True):
                box.anchored_seq = max(box.anchored_seq, ticket.seq)
            self.anchored += len(chunk)

    async def _post(self, url: str, boxes: list[_Outbox]) -> tuple[ChannelTicket, ...]:
        """Post the latest tickets of `boxes` to `url`'s `/v1/channels`; the tickets it took."""
        offer = ChannelTickets(tuple(b.ticket for b in boxes), tuple(b.voucher for b in boxes))
        await rpc.call(self.session, "POST", f"{url}/v1/channels", Ack, offer, timeout_s=self.timeout_s)
        return offer.tickets

    async def _deliver(self, node_id: str) -> None:
        try:
            failures = 0
            while (due := self._due(node_id)) and failures < self.delivery_tries:
                due = due[:64]
                try:
                    tickets = await self._post(due[0].url, due)
                except P2PFaaSError as error:
                    failures += 1
                    log.info("channel tickets to node %s not delivered (%s); retrying", node_id[:12], error)
                    await asyncio.sleep(self.delivery_pause_s * 2 ** (failures - 1))
                    continue
                failures = 0
                for box, ticket in zip(due, tickets, strict=True):
                    box.sent_seq = max(box.sent_seq, ticket.seq)
                self.delivered += len(due)
            if failures >= self.delivery_tries:  # the node is gone for now: the anchor pays it within these
                await self._to_anchor(self._due(node_id))
            if len(self._outboxes) > 4096:  # forget channels whose latest ticket was delivered
                delivered = [
                    k for k, b in self._outboxes.items() if b.ticket.seq <= max(b.sent_seq, b.anchored_seq)
                ]
                for key in delivered:
                    del self._outboxes[key]
        finally:
            self._busy.discard(node_id)

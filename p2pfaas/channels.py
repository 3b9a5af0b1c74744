"""Payment channels: the anchor pays a node only what the lessee signed for that node's results.

A spend ticket (`p2pfaas.tickets`) says what the lessee *asked* for, and is seen by every node a
request passes; so it cannot say who earned the payment. A node the call was offered to and that
refused it, an entry node that stayed silent and was hedged, or a lessee's own sybil named as
payee could all bill the call first. The channel closes that: one channel per (voucher, node),
and after each result the lessee *received*, it signs a new cumulative `ChannelTicket` for the
node that signed the result's receipt (`seq` + 1, `total_micro` + that receipt's price). So:

- the anchor pays a node's receipts on a voucher only while their sum stays within the highest
  `total_micro` the lessee signed for that node (`Refusal.UNSIGNED` otherwise, which the node
  resends once a newer ticket covers it): a node is paid at most for results the lessee accepted
  from that very node, whatever receipts it makes up, and a replayed or older ticket changes
  nothing (the anchor keeps the highest total);
- a lessee that stops signing is refused further work by the node once what it owes there passes
  a credit of a few calls (`behind_problem`, checked before each paid call): an honest node's loss
  to a cheating lessee is bounded by that credit;
- the lessee signs only receipts that verify, charge within the cap it signed for that call, and
  that it has not accepted before (`LesseeChannels.accept`).

The node keeps only the latest ticket per voucher (`p2pfaas.node.payments.channel_store`); the
lessee's client delivers them (`p2pfaas.client.channels`). Sans-I/O: signatures and arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cachetools import FIFOCache

from p2pfaas import signing
from p2pfaas.errors import SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import ChannelTicket, Receipt
from p2pfaas.tickets import price_problem, receipt_ticket_problem

__all__ = [
    "CREDIT_CALLS",
    "LesseeChannels",
    "behind_problem",
    "channel_problem",
    "sign_channel",
]

CREDIT_CALLS = 4  # a node runs this many worst-case calls' worth for a lessee behind on its channel
MAX_CHANNELS = 4096  # channels a lessee's client remembers (the oldest are forgotten first)
MAX_ACCEPTED_IDS = 8192  # invocation ids remembered per channel, against accepting a receipt twice


def sign_channel(
    voucher_id: str, node_id: str, *, seq: int, total_micro: int, keys: KeyPair
) -> ChannelTicket:
    unsigned = ChannelTicket(voucher_id, node_id, seq, total_micro, signer=b"", signature=b"")
    return signing.sign(unsigned, keys)


def channel_problem(ticket: ChannelTicket, *, node_id: str, lessee_key: bytes | None = None) -> str | None:
    """Why `ticket` is not a valid channel ticket to node `node_id` (from `lessee_key`, when given)."""
    if ticket.node_id != node_id:
        return f"is for node {ticket.node_id[:12]}, not {node_id[:12]}"
    if lessee_key is not None and ticket.signer != lessee_key:
        return "is signed by another key than the voucher's lessee"
    try:
        signing.verify(ticket)
    except SignatureError:
        return "has a signature that does not verify"
    return None


def behind_problem(*, owed_micro: int, signed_micro: int, credit_micro: int) -> str | None:
    """Why a node should run no more for a lessee that owes it `owed_micro` and signed `signed_micro`."""
    behind = owed_micro - signed_micro
    if behind <= credit_micro:
        return None
    return (
        f"the lessee's channel with this node is {behind} micro-credits behind what its results cost "
        f"(credit {credit_micro}): send a newer channel ticket to POST /v1/channels first"
    )


@dataclass
class _Channel:
    seq: int = 0
    total_micro: int = 0
    accepted: FIFOCache[str, None] = field(default_factory=lambda: FIFOCache(MAX_ACCEPTED_IDS))


@dataclass
class LesseeChannels:
    """A lessee's side of its channels: which receipts it accepted, and the latest ticket of each."""

    keys: KeyPair
    # Most recently used last (popped and put back on each receipt), the first forgotten beyond MAX_CHANNELS.
    _channels: FIFOCache[tuple[str, str], _Channel] = field(default_factory=lambda: FIFOCache(MAX_CHANNELS))

    def accept(self, receipt: Receipt) -> ChannelTicket | None:
        """The new ticket for the node that signed `receipt`, or None when there is nothing to pay
        (unpaid or free) or the receipt is not one this lessee owes: not signed by a node, not for a
        request this lessee's key ticketed, over that ticket's cap, or accepted before."""
        if not receipt.voucher_id or receipt.price_micro <= 0 or receipt.lessee_key != self.keys.public.raw:
            return None
        try:
            node_id = signing.verify(receipt).key_id
        except SignatureError:
            return None
        if receipt_ticket_problem(receipt) is not None or price_problem(receipt) is not None:
            return None
        key = (receipt.voucher_id, node_id)
        channel = self._channels.pop(key) if key in self._channels else _Channel()
        self._channels[key] = channel  # put back last
        if receipt.invocation_id in channel.accepted:
            return None
        channel.accepted[receipt.invocation_id] = None
        channel.seq += 1
        channel.total_micro += receipt.price_micro
        return sign_channel(
            receipt.voucher_id, node_id, seq=channel.seq, total_micro=channel.total_micro, keys=self.keys
        )

    def totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(seq, total) of each channel's latest ticket, by (voucher id, node id)."""
        return {key: (channel.seq, channel.total_micro) for key, channel in self._channels.items()}

    def total_micro(self, voucher_id: str, node_id: str) -> int:
        channel = self._channels.get((voucher_id, node_id))
        return 0 if channel is None else channel.total_micro

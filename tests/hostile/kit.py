"""The hostile kit: what a dishonest node or lessee sends, built from genuine parts.

Every scenario of issue #14 is kept here as a small function, so later work can replay them:
a node that bills a call it never ran, one that alters a receipt after signing it, one that
signs garbage, a lessee whose ticket names another node. They use only the public message
types and `signing`, as an attacker would; nothing here calls into the code under test.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

from p2pfaas import channels, signing, tickets
from p2pfaas.identity import KeyPair
from p2pfaas.messages import ChannelTicket, Delegation, Receipt, ReceiptBatch

DIGEST = "ab" * 32


def paid_receipt(
    invocation_id: str,
    *,
    node: KeyPair,
    lessee: KeyPair,
    voucher_id: str,
    price_micro: int,
    issued_at: float,
    payee: KeyPair | None = None,
    cap_micro: int | None = None,
    delegations: Sequence[Delegation] = (),
    result: bytes = b"ok",
    ticket_by: KeyPair | None = None,
) -> Receipt:
    """A receipt `node` signs for a call its lessee really asked for: the lessee's ticket names
    `payee` (default: `node`) and caps the price at `cap_micro` (default: the price). `ticket_by`
    signs the ticket instead of the lessee (a forgery); with no `voucher_id`, no ticket (unpaid)."""
    ran = hashlib.sha256(f"request {invocation_id}".encode()).digest()
    ticket = None
    if voucher_id:
        ticket = tickets.sign_ticket(
            invocation_id,
            voucher_id,
            ran,
            ticket_by or lessee,
            payee=(payee or node).key_id,
            max_price_micro=price_micro if cap_micro is None else cap_micro,
        )
    unsigned = Receipt(
        invocation_id=invocation_id,
        digest=DIGEST,
        lessee_key=lessee.public.raw,
        voucher_id=voucher_id,
        ok=True,
        cpu_ms=10,
        peak_memory_mb=20,
        wall_ms=12,
        price_micro=price_micro,
        result_sha256=hashlib.sha256(result).digest(),
        issued_at=issued_at,
        signer=b"",
        signature=b"",
        request_sha256=ran,
        ticket=ticket,
        delegations=tuple(delegations),
    )
    return signing.sign(unsigned, node)


def rebill(receipt: Receipt, *, node: KeyPair, **changes: Any) -> Receipt:
    """A node's receipt for another node's call: the lessee's genuine ticket, its own signature."""
    return signing.sign(dataclasses.replace(receipt, delegations=(), **changes), node)


def tampered(receipt: Receipt, **changes: Any) -> Receipt:
    """`receipt` with fields changed after signing, its old signature kept."""
    return dataclasses.replace(receipt, **changes)


def garbage_signature(receipt: Receipt) -> Receipt:
    return dataclasses.replace(receipt, signature=bytes(64))


def channel(
    voucher_id: str, *, node: KeyPair, lessee: KeyPair, total_micro: int, seq: int = 1
) -> ChannelTicket:
    """The lessee's cumulative channel ticket: it accepted `total_micro` of `node`'s results."""
    return channels.sign_channel(voucher_id, node.key_id, seq=seq, total_micro=total_micro, keys=lessee)


def batch(
    receipts: Sequence[Receipt], node: KeyPair, *, with_channels: Sequence[ChannelTicket] = ()
) -> ReceiptBatch:
    """A batch the sending node signs properly: its signature covers whatever is inside."""
    unsigned = ReceiptBatch(tuple(receipts), signer=b"", signature=b"", channels=tuple(with_channels))
    return signing.sign(unsigned, node)

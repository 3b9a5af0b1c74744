"""Spend tickets: the lessee's signature on each paid invocation, checkable without its payload.

A node bills a voucher with receipts it signs itself, and the anchor never sees the payloads that
the lessee's `InvokeRequest` signature covers (up to 6 MiB each). Without more, a node that has
seen a voucher could invent receipts against it up to its budget. So a paid request carries a
`SpendTicket` (invocation id, voucher id, `request_sha256(request)`, signed by the lessee):

- the client signs one per paid request (`signed_request`), for every replica and every retry
  of the same invocation id alike (a forward reuses the request, ticket included);
- the node refuses a paid request whose ticket is missing, signed by another key than the
  request's, or names another invocation, voucher or request (`request_ticket_problem`), and
  copies the ticket into its receipt;
- the anchor refuses (`Refusal.BAD_TICKET`) a receipt whose ticket is missing, does not verify,
  is not signed by the receipt's lessee key, or names another invocation, voucher or request hash
  than the receipt (`receipt_ticket_problem`); settlement then checks that this lessee key is the
  voucher's (`Refusal.WRONG_LESSEE`), so only the voucher's holder can authorise a charge.

A ticket does not bound the price: the node still meters and prices the work it ran, bounded by
what it may reserve on the voucher (`p2pfaas.node.vouchers`). Sans-I/O: signatures only.
"""

from __future__ import annotations

import dataclasses

from p2pfaas import signing
from p2pfaas.errors import SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest, Receipt, SpendTicket, request_sha256

__all__ = [
    "receipt_ticket_problem",
    "request_ticket_problem",
    "sign_ticket",
    "signed_request",
    "ticket_for",
]


def sign_ticket(invocation_id: str, voucher_id: str, request_hash: bytes, keys: KeyPair) -> SpendTicket:
    return signing.sign(SpendTicket(invocation_id, voucher_id, request_hash, signer=b"", signature=b""), keys)


def ticket_for(request: InvokeRequest, keys: KeyPair) -> SpendTicket:
    """The lessee's ticket for paid `request` (its voucher set; signature fields not needed)."""
    if request.voucher is None:
        raise ValueError("only a request that carries a voucher needs a spend ticket")
    return sign_ticket(request.invocation_id, request.voucher.voucher_id, request_sha256(request), keys)


def signed_request(request: InvokeRequest, keys: KeyPair) -> InvokeRequest:
    """Sign `request` with `keys`, first attaching a spend ticket when it carries a voucher."""
    ticket = ticket_for(request, keys) if request.voucher is not None else None
    return signing.sign(dataclasses.replace(request, ticket=ticket), keys)


def _problem(
    ticket: SpendTicket | None, *, invocation_id: str, voucher_id: str, request_hash: bytes, lessee_key: bytes
) -> str | None:
    if ticket is None:
        return "carries no spend ticket from the lessee"
    if ticket.signer != lessee_key:
        return "has a spend ticket signed by another key than the lessee's"
    if ticket.invocation_id != invocation_id or ticket.voucher_id != voucher_id:
        return "has a spend ticket for another invocation or voucher"
    if ticket.request_sha256 != request_hash:
        return "has a spend ticket for another request"
    try:
        signing.verify(ticket)
    except SignatureError:
        return "has a spend ticket whose signature does not verify"
    return None


def request_ticket_problem(request: InvokeRequest, caller_key: bytes) -> str | None:
    """Why paid `request` (signed by `caller_key`) has no valid ticket, or None when it has one."""
    if request.voucher is None:
        return None
    return _problem(
        request.ticket,
        invocation_id=request.invocation_id,
        voucher_id=request.voucher.voucher_id,
        request_hash=request_sha256(request),
        lessee_key=caller_key,
    )


def receipt_ticket_problem(receipt: Receipt) -> str | None:
    """Why `receipt` does not carry its lessee's valid ticket, or None when it does."""
    return _problem(
        receipt.ticket,
        invocation_id=receipt.invocation_id,
        voucher_id=receipt.voucher_id,
        request_hash=receipt.request_sha256,
        lessee_key=receipt.lessee_key,
    )

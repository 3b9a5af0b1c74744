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

The ticket also names its `payee`, the entry node the client sent the request to, and the most
that node may charge (`max_price_micro`, the lessee's price ceiling applied to the function's
timeout and memory). A node that forwards the request signs a `Delegation` to the next node; the
executing node copies the chain into its receipt. The anchor pays a receipt only when the chain
leads from the payee to the receipt's signer (`chain_problem`) and its price is within the cap
(`price_problem`), so a node that only passed a call on cannot bill it, and nobody can bill more
than the lessee signed. Sans-I/O: signatures only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from p2pfaas import signing
from p2pfaas.errors import SignatureError
from p2pfaas.identity import KeyPair, PublicKey
from p2pfaas.messages import Delegation, InvokeRequest, Receipt, SpendTicket, request_sha256

__all__ = [
    "chain_problem",
    "delegate",
    "price_problem",
    "receipt_signature_problem",
    "receipt_ticket_problem",
    "request_ticket_problem",
    "sign_ticket",
    "signed_request",
    "ticket_for",
]


def sign_ticket(
    invocation_id: str,
    voucher_id: str,
    request_hash: bytes,
    keys: KeyPair,
    *,
    payee: str,
    max_price_micro: int,
) -> SpendTicket:
    unsigned = SpendTicket(
        invocation_id, voucher_id, request_hash, payee, max_price_micro, signer=b"", signature=b""
    )
    return signing.sign(unsigned, keys)


def ticket_for(request: InvokeRequest, keys: KeyPair, *, payee: str, max_price_micro: int) -> SpendTicket:
    """The lessee's ticket for paid `request` (its voucher set; signature fields not needed)."""
    if request.voucher is None:
        raise ValueError("only a request that carries a voucher needs a spend ticket")
    return sign_ticket(
        request.invocation_id,
        request.voucher.voucher_id,
        request_sha256(request),
        keys,
        payee=payee,
        max_price_micro=max_price_micro,
    )


def signed_request(
    request: InvokeRequest, keys: KeyPair, *, payee: str = "", max_price_micro: int = 0
) -> InvokeRequest:
    """Sign `request` with `keys`, first attaching a spend ticket (for entry node `payee`, at most
    `max_price_micro`) when it carries a voucher."""
    ticket = None
    if request.voucher is not None:
        ticket = ticket_for(request, keys, payee=payee, max_price_micro=max_price_micro)
    return signing.sign(dataclasses.replace(request, ticket=ticket), keys)


def delegate(invocation_id: str, to_node_id: str, keys: KeyPair) -> Delegation:
    """This node's signed word that it passes `invocation_id` on to node `to_node_id`."""
    return signing.sign(Delegation(invocation_id, to_node_id, signer=b"", signature=b""), keys)


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


def chain_problem(ticket: SpendTicket, delegations: Sequence[Delegation], node_id: str) -> str | None:
    """Why the forwards `delegations` do not lead from `ticket`'s payee to node `node_id`, or None."""
    holder = ticket.payee
    for hop in delegations:
        if hop.invocation_id != ticket.invocation_id:
            return "carries a delegation for another invocation"
        try:
            signer = signing.verify(hop)
        except SignatureError:
            return "carries a delegation whose signature does not verify"
        if signer.key_id != holder:
            return f"carries a delegation signed by {signer.key_id[:12]}, not by {holder[:12]}"
        holder = hop.to
    if holder != node_id:
        return f"was paid to node {holder[:12]}, not to {node_id[:12]}"
    return None


def request_ticket_problem(
    request: InvokeRequest, caller_key: bytes, *, node_id: str, delegations: Sequence[Delegation] = ()
) -> str | None:
    """Why paid `request` (signed by `caller_key`, reaching node `node_id` through `delegations`)
    has no valid ticket for this node, or None when it has one."""
    if request.voucher is None:
        return None
    problem = _problem(
        request.ticket,
        invocation_id=request.invocation_id,
        voucher_id=request.voucher.voucher_id,
        request_hash=request_sha256(request),
        lessee_key=caller_key,
    )
    if problem is None:
        assert request.ticket is not None
        problem = chain_problem(request.ticket, delegations, node_id)
    return problem


def receipt_signature_problem(receipt: Receipt, node_id: str) -> str | None:
    """Why `receipt` is not signed, on its own, by node `node_id`, or None when it is."""
    try:
        signer = signing.verify(receipt)
    except SignatureError:
        return "its own signature does not verify"
    if signer.key_id != node_id:
        return "it is signed by another node than the batch's"
    return None


def receipt_ticket_problem(receipt: Receipt) -> str | None:
    """Why `receipt` does not carry its lessee's valid ticket, or None when it does."""
    return _problem(
        receipt.ticket,
        invocation_id=receipt.invocation_id,
        voucher_id=receipt.voucher_id,
        request_hash=receipt.request_sha256,
        lessee_key=receipt.lessee_key,
    )


def price_problem(receipt: Receipt) -> str | None:
    """Why `receipt` charges more than its (valid) ticket allows, or None."""
    assert receipt.ticket is not None
    if receipt.price_micro > receipt.ticket.max_price_micro:
        return f"charges {receipt.price_micro}, over the lessee's cap of {receipt.ticket.max_price_micro}"
    return None


def signer_id(receipt: Receipt) -> str:
    return PublicKey(receipt.signer).key_id

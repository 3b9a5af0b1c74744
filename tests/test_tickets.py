"""Spend tickets (`p2pfaas.tickets`): the lessee's signature on each paid call, the forwards from its
payee to the node that ran it, and the price cap, each checked without the payload."""

from __future__ import annotations

import dataclasses

import pytest

from p2pfaas import signing, tickets
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest, Voucher
from tests.hostile import kit

T0 = 1_700_000_000.0
DIGEST = "ab" * 32


LESSEE, OTHER, ANCHOR, ENTRY, EXECUTOR = (KeyPair.from_seed(bytes([n]) * 32) for n in range(5))


def voucher() -> Voucher:
    return signing.sign(Voucher("v1", LESSEE.public.raw, 1000, T0 + 600, signer=b"", signature=b""), ANCHOR)


def paid_request(invocation_id: str = "i1", *, payload: bytes = b"{}") -> InvokeRequest:
    unsigned = InvokeRequest(invocation_id, DIGEST, payload, 10.0, voucher(), signer=b"", signature=b"")
    return tickets.signed_request(unsigned, LESSEE, payee=ENTRY.key_id, max_price_micro=300)


def test_a_paid_request_carries_its_lessees_ticket_for_it_and_an_unpaid_one_none() -> None:
    request = paid_request()
    assert request.ticket is not None and request.ticket.payee == ENTRY.key_id
    assert request.ticket.max_price_micro == 300
    assert signing.verify(request).raw == LESSEE.public.raw
    assert tickets.request_ticket_problem(request, LESSEE.public.raw, node_id=ENTRY.key_id) is None
    unpaid = InvokeRequest("i2", DIGEST, b"{}", 10.0, None, signer=b"", signature=b"")
    assert tickets.signed_request(unpaid, LESSEE).ticket is None
    assert tickets.request_ticket_problem(unpaid, LESSEE.public.raw, node_id=ENTRY.key_id) is None
    with pytest.raises(ValueError, match="carries a voucher"):
        tickets.ticket_for(unpaid, LESSEE, payee=ENTRY.key_id, max_price_micro=1)


def test_a_ticket_for_another_key_call_or_request_is_a_problem() -> None:
    request = paid_request()
    assert request.ticket is not None

    def problem(changed: InvokeRequest, caller: KeyPair = LESSEE) -> str | None:
        return tickets.request_ticket_problem(changed, caller.public.raw, node_id=ENTRY.key_id)

    assert problem(dataclasses.replace(request, ticket=None)) == "carries no spend ticket from the lessee"
    assert problem(request, OTHER) == "has a spend ticket signed by another key than the lessee's"
    other_call = dataclasses.replace(request, ticket=paid_request("i9").ticket)
    assert problem(other_call) == "has a spend ticket for another invocation or voucher"
    other_payload = dataclasses.replace(request, payload=b'{"x": 1}')
    assert problem(other_payload) == "has a spend ticket for another request"
    forged = dataclasses.replace(request, ticket=dataclasses.replace(request.ticket, signature=bytes(64)))
    assert problem(forged) == "has a spend ticket whose signature does not verify"


def test_the_forwards_must_lead_from_the_payee_to_the_node_that_ran_it() -> None:
    request = paid_request()
    ticket = request.ticket
    assert ticket is not None
    hop = tickets.delegate("i1", EXECUTOR.key_id, ENTRY)
    assert tickets.chain_problem(ticket, [hop], EXECUTOR.key_id) is None
    assert (
        tickets.request_ticket_problem(request, LESSEE.public.raw, node_id=EXECUTOR.key_id, delegations=[hop])
        is None
    )
    assert tickets.chain_problem(ticket, [], EXECUTOR.key_id) == (
        f"was paid to node {ENTRY.key_id[:12]}, not to {EXECUTOR.key_id[:12]}"
    )
    by_executor = tickets.delegate("i1", EXECUTOR.key_id, EXECUTOR)  # not the payee's to give
    assert tickets.chain_problem(ticket, [by_executor], EXECUTOR.key_id) == (
        f"carries a delegation signed by {EXECUTOR.key_id[:12]}, not by {ENTRY.key_id[:12]}"
    )
    other_call = tickets.delegate("i2", EXECUTOR.key_id, ENTRY)
    assert tickets.chain_problem(ticket, [other_call], EXECUTOR.key_id) == (
        "carries a delegation for another invocation"
    )
    forged = dataclasses.replace(hop, signature=bytes(64))
    assert tickets.chain_problem(ticket, [forged], EXECUTOR.key_id) == (
        "carries a delegation whose signature does not verify"
    )


def test_a_receipt_is_checked_for_its_signer_its_ticket_and_its_price() -> None:
    receipt = kit.paid_receipt(
        "i1", node=EXECUTOR, lessee=LESSEE, voucher_id="v1", price_micro=200, issued_at=T0, cap_micro=250
    )
    assert tickets.receipt_signature_problem(receipt, EXECUTOR.key_id) is None
    assert (
        tickets.receipt_signature_problem(receipt, ENTRY.key_id)
        == "it is signed by another node than the batch's"
    )
    assert tickets.receipt_signature_problem(kit.garbage_signature(receipt), EXECUTOR.key_id) == (
        "its own signature does not verify"
    )
    assert tickets.signer_id(receipt) == EXECUTOR.key_id
    assert tickets.receipt_ticket_problem(receipt) is None
    assert tickets.price_problem(receipt) is None
    over = kit.tampered(receipt, price_micro=251)
    assert tickets.price_problem(over) == "charges 251, over the lessee's cap of 250"
    forged = kit.paid_receipt(
        "i1", node=EXECUTOR, lessee=LESSEE, voucher_id="v1", price_micro=200, issued_at=T0, ticket_by=OTHER
    )
    assert (
        tickets.receipt_ticket_problem(forged) == "has a spend ticket signed by another key than the lessee's"
    )

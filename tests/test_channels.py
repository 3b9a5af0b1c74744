"""Payment channels, the sans-I/O core: what a lessee signs for, and when a node stops working."""

from __future__ import annotations

import dataclasses
from typing import Any

from p2pfaas import signing
from p2pfaas.channels import LesseeChannels, behind_problem, channel_problem, sign_channel
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Receipt
from tests.hostile import kit
from tests.ledger.conftest import T0, keys

LESSEE, NODE, OTHER_NODE, MALLORY = keys("lessee"), keys("node"), keys("node-2"), keys("mallory")


def paid(
    invocation_id: str, price: int = 100, *, node: KeyPair = NODE, cap: int | None = None, **kw: Any
) -> Receipt:
    return kit.paid_receipt(
        invocation_id, node=node, lessee=LESSEE, voucher_id="v1", price_micro=price, issued_at=T0,
        cap_micro=cap, **kw,
    )  # fmt: skip


def test_each_received_result_raises_its_nodes_channel_by_its_price_once() -> None:
    book = LesseeChannels(LESSEE)
    first = book.accept(paid("a", 100))
    second = book.accept(paid("b", 50))
    other = book.accept(paid("c", 70, node=OTHER_NODE))
    assert first is not None and second is not None and other is not None
    assert (first.seq, first.total_micro, second.seq, second.total_micro) == (1, 100, 2, 150)
    assert (other.node_id, other.seq, other.total_micro) == (OTHER_NODE.key_id, 1, 70)
    assert channel_problem(second, node_id=NODE.key_id, lessee_key=LESSEE.public.raw) is None
    assert book.accept(paid("a", 100)) is None  # the same result again: signed once
    assert book.total_micro("v1", NODE.key_id) == 150


def test_a_lessee_signs_nothing_for_receipts_it_does_not_owe() -> None:
    book = LesseeChannels(LESSEE)
    assert book.accept(paid("over", 500, cap=100)) is None  # charges over the cap the lessee signed
    assert book.accept(kit.tampered(paid("altered", 10), price_micro=99)) is None  # signature broken
    assert book.accept(paid("forged", 10, ticket_by=MALLORY)) is None  # a ticket the lessee never signed
    assert book.accept(paid("free", 0)) is None  # nothing to pay
    unpaid = kit.paid_receipt("unpaid", node=NODE, lessee=LESSEE, voucher_id="", price_micro=5, issued_at=T0)
    assert book.accept(unpaid) is None
    someone_else = kit.paid_receipt(
        "theirs", node=NODE, lessee=MALLORY, voucher_id="v1", price_micro=5, issued_at=T0
    )
    assert book.accept(someone_else) is None
    assert book.total_micro("v1", NODE.key_id) == 0


def test_a_ticket_proves_only_what_its_lessee_signed_for_its_node() -> None:
    ticket = sign_channel("v1", NODE.key_id, seq=3, total_micro=300, keys=LESSEE)
    assert channel_problem(ticket, node_id=NODE.key_id, lessee_key=LESSEE.public.raw) is None
    assert "not" in (channel_problem(ticket, node_id=OTHER_NODE.key_id) or "")
    assert "another key" in (
        channel_problem(ticket, node_id=NODE.key_id, lessee_key=MALLORY.public.raw) or ""
    )
    raised = dataclasses.replace(ticket, total_micro=10**6)  # the node raises the total it holds
    assert "does not verify" in (channel_problem(raised, node_id=NODE.key_id) or "")
    resigned = signing.sign(raised, MALLORY)
    assert channel_problem(resigned, node_id=NODE.key_id, lessee_key=LESSEE.public.raw) is not None


def test_a_node_stops_when_the_lessee_is_more_than_its_credit_behind() -> None:
    assert behind_problem(owed_micro=1_000, signed_micro=1_000, credit_micro=0) is None
    assert behind_problem(owed_micro=1_400, signed_micro=1_000, credit_micro=400) is None
    problem = behind_problem(owed_micro=1_401, signed_micro=1_000, credit_micro=400)
    assert problem is not None and "401 micro-credits behind" in problem and "/v1/channels" in problem

"""Ledger rules as plain functions and tables: fees, account sign rules, payouts, batch admission.

Sans-I/O: nothing here touches a database, a clock or the network. The store (`store.py`,
`settlement.py`) reads rows, asks these rules what to do, and writes the answer in one transaction.

- `FeePolicy.fee_micro(price)`: the anchor's fee on top of a node's price, in parts per million,
  rounded up (the anchor never undercharges by rounding; the volunteer always gets the whole price).
- `may_go_negative(kind)`: only "external" accounts (money entering or leaving the ledger) may.
- `PayoutState` and `next_payout_state`: pending -> paid | failed, nothing else.
- `admit_batch`: which receipts of a batch to pay, and why the others are refused, given the
  vouchers they draw on and the invocations already settled. Each invocation at most once, each
  voucher never beyond its remaining hold.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from p2pfaas.errors import LocalError

__all__ = [
    "AccountKind",
    "Admission",
    "FeePolicy",
    "PayoutState",
    "Refusal",
    "VoucherView",
    "admit_batch",
    "may_go_negative",
    "next_payout_state",
]

MICRO = 1_000_000  # micro-credits per credit


class AccountKind(enum.StrEnum):
    """What an account is for; decides whether its balance may go below zero."""

    LESSEE = "lessee"  # a lessee's spendable credits
    VOLUNTEER = "volunteer"  # a volunteer's earnings (node earnings land here once claimed)
    NODE = "node"  # an unclaimed node's earnings
    HOLD = "hold"  # one voucher's escrow
    ANCHOR = "anchor"  # the anchor's fees
    CLEARING = "clearing"  # payouts requested, not yet paid
    EXTERNAL = "external"  # the world: grants, payment providers, money paid out


def may_go_negative(kind: str) -> bool:
    """Only the ledger's view of the outside world runs a negative balance (it is where money comes from)."""
    return kind == AccountKind.EXTERNAL


@dataclass(frozen=True)
class FeePolicy:
    """The anchor's fee, in parts per million of the node's price, charged to the lessee on top."""

    fee_ppm: int = 50_000  # 5 %

    def __post_init__(self) -> None:
        if not 0 <= self.fee_ppm <= MICRO:
            raise LocalError(f"fee_ppm must be within 0..{MICRO}, got {self.fee_ppm}")

    def fee_micro(self, price_micro: int) -> int:
        assert price_micro >= 0, price_micro
        return -(-price_micro * self.fee_ppm // MICRO)  # ceiling division

    def charge_micro(self, price_micro: int) -> int:
        """What the lessee's hold pays for one receipt: the price and the fee."""
        return price_micro + self.fee_micro(price_micro)


class PayoutState(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


_PAYOUT_TRANSITIONS: Mapping[PayoutState, frozenset[PayoutState]] = {
    PayoutState.PENDING: frozenset({PayoutState.PAID, PayoutState.FAILED}),
    PayoutState.PAID: frozenset(),
    PayoutState.FAILED: frozenset(),
}


class IllegalTransition(LocalError):
    """A payout was asked to move to a state its current state does not lead to."""


def next_payout_state(current: str, wanted: str) -> PayoutState:
    """`wanted` as a state if `current` may move there; raise `IllegalTransition` otherwise."""
    now, then = PayoutState(current), PayoutState(wanted)
    if then not in _PAYOUT_TRANSITIONS[now]:
        raise IllegalTransition(f"a payout cannot go from {now} to {then}")
    return then


# --- settlement admission -----------------------------------------------------------------------


class Refusal(enum.StrEnum):
    """Why a receipt was not paid. DUPLICATE is not an error: the invocation was paid already."""

    DUPLICATE = "duplicate"
    UNKNOWN_VOUCHER = "unknown-voucher"
    WRONG_LESSEE = "wrong-lessee"
    VOUCHER_CLOSED = "voucher-closed"
    AFTER_EXPIRY = "after-expiry"
    OVER_BUDGET = "over-budget"
    NO_PRICE = "no-price"
    OUTVOTED = "outvoted"  # a replica whose result lost its vote (p2pfaas.trust.gate); never paid
    BAD_TICKET = "bad-ticket"  # no valid spend ticket from the lessee (p2pfaas.tickets)
    BAD_SIGNATURE = "bad-signature"  # the receipt's own signature does not verify
    WRONG_NODE = "wrong-node"  # the ticket (and its delegations) pay another node than the signer
    OVER_TICKET = "over-ticket"  # the price is over the cap the lessee signed
    # Over what the lessee signed on this node's channel (`p2pfaas.channels`): not paid now, and
    # paid when a newer channel ticket covers it. The only refusal a node resends.
    UNSIGNED = "unsigned"


# The settlement ids of channel rounds' rests (`rounds.rest_id`): no receipt may use them.
REST_PREFIX = "ch:"


@dataclass(frozen=True)
class VoucherView:
    """What admission needs to know of a voucher, read under its row lock."""

    voucher_id: str
    lessee_key: bytes
    remaining_micro: int  # the hold account's balance
    expires_at: float
    open: bool


@dataclass(frozen=True)
class ReceiptClaim:
    """The parts of a verified receipt that settlement decides on."""

    invocation_id: str
    voucher_id: str
    lessee_key: bytes
    price_micro: int
    issued_at: float
    result_sha256: bytes = b""
    digest: str | None = None  # the function it ran (None: a channel's rest, `rounds`)
    cpu_ms: int = 0
    mb_ms: int = 0  # peak memory (MB) x wall time (ms)


@dataclass
class Admission:
    """`admit_batch`'s answer: receipts to pay (with their fee) and refusals by invocation id."""

    paid: list[tuple[ReceiptClaim, int]] = field(default_factory=list)  # (claim, fee_micro)
    refused: dict[str, Refusal] = field(default_factory=dict)
    spent_micro: dict[str, int] = field(default_factory=dict)  # voucher id -> charged in this batch
    channel_micro: dict[str, int] = field(default_factory=dict)  # voucher id -> node price admitted


def admit_batch(
    claims: Iterable[ReceiptClaim],
    *,
    vouchers: Mapping[str, VoucherView],
    settled: frozenset[str],
    fees: FeePolicy,
    expiry_skew_s: float,
    channel_room: Mapping[str, int] | None = None,
) -> Admission:
    """Decide a batch in order: first come, first paid, while the voucher's hold lasts and, given
    `channel_room` (voucher id -> what the lessee signed for this node and is not paid yet), while
    the node's channel on that voucher covers the price (UNSIGNED otherwise; None: not gated).

    A receipt issued more than `expiry_skew_s` after its voucher expired is refused (nodes check
    expiry before running; the skew allows for clocks). Zero-price receipts are refused as
    NO_PRICE: nothing to move, and they should not use up an invocation id.
    """
    out = Admission()
    seen: set[str] = set(settled)
    for claim in claims:
        if claim.invocation_id in seen:
            out.refused.setdefault(claim.invocation_id, Refusal.DUPLICATE)
            continue
        voucher = vouchers.get(claim.voucher_id)
        refusal: Refusal | None = None
        if voucher is None:
            refusal = Refusal.UNKNOWN_VOUCHER
        elif voucher.lessee_key != claim.lessee_key:
            refusal = Refusal.WRONG_LESSEE
        elif not voucher.open:
            refusal = Refusal.VOUCHER_CLOSED
        elif claim.issued_at > voucher.expires_at + expiry_skew_s:
            refusal = Refusal.AFTER_EXPIRY
        elif claim.price_micro <= 0:
            refusal = Refusal.NO_PRICE
        if refusal is not None or voucher is None:
            out.refused[claim.invocation_id] = refusal or Refusal.UNKNOWN_VOUCHER
            continue
        charge = fees.charge_micro(claim.price_micro)
        spent = out.spent_micro.get(voucher.voucher_id, 0)
        if spent + charge > voucher.remaining_micro:
            out.refused[claim.invocation_id] = Refusal.OVER_BUDGET
            continue
        if channel_room is not None:
            room = channel_room.get(voucher.voucher_id, 0) - out.channel_micro.get(voucher.voucher_id, 0)
            if claim.price_micro > room:
                out.refused[claim.invocation_id] = Refusal.UNSIGNED
                continue
            out.channel_micro[voucher.voucher_id] = (
                out.channel_micro.get(voucher.voucher_id, 0) + claim.price_micro
            )
        out.spent_micro[voucher.voucher_id] = spent + charge
        out.paid.append((claim, charge - claim.price_micro))
        seen.add(claim.invocation_id)
    for voucher_id, spent in out.spent_micro.items():
        assert spent <= vouchers[voucher_id].remaining_micro, (voucher_id, spent)
    return out

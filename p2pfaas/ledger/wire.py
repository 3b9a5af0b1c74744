"""The ledger's wire messages (codec tags 80-99): grants, top-ups, vouchers, receipts, balances, payouts.

Requests from users are authenticated by their API token (HTTP `Authorization`), so these carry
no signature; a node's receipt batch is `messages.ReceiptBatch`, signed by the node key, and a
voucher is `messages.Voucher`, signed by the anchor. Routes: `p2pfaas.anchor.ledger_api`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from p2pfaas.codec import MaxLen, Message, message
from p2pfaas.messages import PublicKeyBytes
from p2pfaas.money import check_amount

__all__ = [
    "AccountBalance",
    "AnchorKey",
    "Balances",
    "BatchResult",
    "GrantRequest",
    "PayoutInfo",
    "PayoutRequest",
    "PayoutUpdate",
    "RefusedReceipt",
    "TopUpRequest",
    "TransferDone",
    "UsageLine",
    "UsageReport",
    "VoucherInfo",
    "VoucherRequest",
]

Ref = Annotated[str, MaxLen(64)]


def _positive(name: str, value: int) -> None:
    """Amounts are positive and at most `money.MAX_AMOUNT_MICRO` (ValueError: a DecodeError on the wire)."""
    check_amount(name, value)


@message(80)
@dataclass(frozen=True)
class GrantRequest(Message):
    """An operator gives `amount_micro` credits to `username`. `ref` makes a repeat a no-op."""

    username: Annotated[str, MaxLen(64)]
    amount_micro: int
    ref: Ref
    memo: Annotated[str, MaxLen(200)]

    def __post_init__(self) -> None:
        _positive("amount_micro", self.amount_micro)


@message(81)
@dataclass(frozen=True)
class TransferDone(Message):
    """Money moved (or had moved before: `repeat`); `balance_micro` is the target account's balance now."""

    account_id: int
    balance_micro: int
    repeat: bool


@message(82)
@dataclass(frozen=True)
class TopUpRequest(Message):
    """Credits paid in through `provider`; `payment_ref` names the real payment at that provider.

    `username` is whose account to credit: empty for the caller's own.
    """

    provider: Annotated[str, MaxLen(32)]
    username: Annotated[str, MaxLen(64)]
    amount_micro: int
    payment_ref: Ref

    def __post_init__(self) -> None:
        _positive("amount_micro", self.amount_micro)


@message(83)
@dataclass(frozen=True)
class VoucherRequest(Message):
    """A lessee asks for a voucher for its key `lessee_key`; the answer is a signed `messages.Voucher`.

    `request_id` is the client's idempotency key: asking again returns the same voucher.
    """

    lessee_key: PublicKeyBytes
    budget_micro: int
    ttl_s: float
    request_id: Ref

    def __post_init__(self) -> None:
        _positive("budget_micro", self.budget_micro)


@message(84)
@dataclass(frozen=True)
class VoucherInfo(Message):
    voucher_id: Ref
    budget_micro: int
    remaining_micro: int
    expires_at: float
    state: Annotated[str, MaxLen(16)]  # "open" or "closed"


@message(85)
@dataclass(frozen=True)
class RefusedReceipt(Message):
    invocation_id: Ref
    reason: Annotated[str, MaxLen(32)]  # a `policy.Refusal` value


@message(86)
@dataclass(frozen=True)
class BatchResult(Message):
    """What the anchor did with a receipt batch: `paid` now, `duplicate` (paid before), `refused`
    (never to be paid), `unsigned` (not covered yet by what the lessee signed on the node's channel:
    resend it with a newer channel ticket). Every receipt of the batch is in exactly one."""

    paid: Annotated[tuple[Ref, ...], MaxLen(1024)]
    duplicate: Annotated[tuple[Ref, ...], MaxLen(1024)]
    refused: Annotated[tuple[RefusedReceipt, ...], MaxLen(1024)]
    unsigned: Annotated[tuple[Ref, ...], MaxLen(1024)] = ()

    OPTIONAL_TAIL: ClassVar[int] = 1


@message(87)
@dataclass(frozen=True)
class AccountBalance(Message):
    account_id: int
    name: Annotated[str, MaxLen(96)]
    kind: Annotated[str, MaxLen(16)]
    balance_micro: int


@message(88)
@dataclass(frozen=True)
class Balances(Message):
    accounts: Annotated[tuple[AccountBalance, ...], MaxLen(4096)]


@message(89)
@dataclass(frozen=True)
class PayoutRequest(Message):
    """A volunteer asks for `amount_micro` of an account it owns (0: its own) to be paid out."""

    payout_id: Annotated[str, MaxLen(40)]  # the caller's own id; the anchor prefixes its user id
    account_id: int
    amount_micro: int
    destination: Annotated[str, MaxLen(200)]

    def __post_init__(self) -> None:
        _positive("amount_micro", self.amount_micro)


@message(90)
@dataclass(frozen=True)
class PayoutInfo(Message):
    payout_id: Ref
    account_id: int
    amount_micro: int
    state: Annotated[str, MaxLen(16)]  # "pending", "paid" or "failed"
    destination: Annotated[str, MaxLen(255)]


@message(91)
@dataclass(frozen=True)
class PayoutUpdate(Message):
    """An operator records the payment provider's answer for a pending payout."""

    state: Annotated[str, MaxLen(16)]


@message(92)
@dataclass(frozen=True)
class AnchorKey(Message):
    """The anchor's voucher-signing public key (what nodes verify vouchers against) and its fee.

    A node needs the fee to know what an invocation takes out of a voucher: price plus fee.
    """

    public_key: PublicKeyBytes
    fee_ppm: int


@message(135)
@dataclass(frozen=True)
class UsageLine(Message):
    """One line of a lessee's bill (`p2pfaas.ledger.usage`): a function (`name@version`), a day, or
    what channel rounds paid."""

    key: Annotated[str, MaxLen(272)]
    calls: int
    cpu_ms: int
    mb_ms: int  # peak MB x wall ms
    charged_micro: int  # prices and fees


@message(136)
@dataclass(frozen=True)
class UsageReport(Message):
    """`GET /v1/ledger/usage?since=T&by=function|day`: the lines, and where the account's voucher
    credits went, ever (`bought = spent + returned + held`)."""

    lines: Annotated[tuple[UsageLine, ...], MaxLen(10_000)]
    bought_micro: int
    spent_micro: int
    returned_micro: int
    held_micro: int


@message(138)
@dataclass(frozen=True)
class EarningsReport(Message):
    """`GET /v1/ledger/earnings?since=T&by=node|day`: what the caller's nodes were paid (node
    price; `UsageLine.charged_micro`), per node or UTC day, channel rests on their own line."""

    lines: Annotated[tuple[UsageLine, ...], MaxLen(10_000)]

"""Credits in: the payment-provider interface, and the provider that records manual payments.

A provider turns a top-up request into a confirmed payment (amount, and the provider's own
reference for it) or refuses it; the ledger then moves that amount from the provider's external
account ("world:payments:<name>") to the user's account, once per provider reference (a real
payment is credited once, to one account: the same reference again for another account or amount
is an `IdempotencyConflict`, HTTP 409, never a silent repeat). A card or
bank provider would confirm against its API here; `ManualPayments` trusts an operator who saw the
money arrive (a bank transfer, cash) and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from p2pfaas.errors import LocalError
from p2pfaas.ledger.store import LedgerStore

__all__ = ["ConfirmedPayment", "ManualPayments", "PaymentProvider", "PaymentRefused", "Payments", "TopUp"]


class PaymentRefused(LocalError):
    """The provider did not confirm the payment (or no such provider)."""


@dataclass(frozen=True)
class TopUp:
    """A request to add credits to `account_id`. `payment_ref` is the provider-side reference."""

    account_id: int
    amount_micro: int
    payment_ref: str
    requested_by_operator: bool


@dataclass(frozen=True)
class ConfirmedPayment:
    amount_micro: int
    external_ref: str  # unique per real payment at this provider: the top-up's idempotency key


class PaymentProvider(Protocol):
    name: str

    async def confirm(self, topup: TopUp) -> ConfirmedPayment:
        """Confirm `topup` with the provider, or raise `PaymentRefused`."""
        ...


class ManualPayments:
    """Payments an operator received outside the system and records by hand."""

    name = "manual"

    async def confirm(self, topup: TopUp) -> ConfirmedPayment:
        if not topup.requested_by_operator:
            raise PaymentRefused("only an operator may record a manual payment")
        if not topup.payment_ref:
            raise PaymentRefused("a manual payment needs the reference of the real payment")
        if topup.amount_micro <= 0:
            raise PaymentRefused(f"amount must be positive, got {topup.amount_micro}")
        return ConfirmedPayment(topup.amount_micro, topup.payment_ref)


class Payments:
    """The providers an anchor accepts, by name, over one ledger."""

    def __init__(self, store: LedgerStore, providers: list[PaymentProvider] | None = None) -> None:
        self.store = store
        self.providers: dict[str, PaymentProvider] = {p.name: p for p in providers or [ManualPayments()]}

    async def top_up(self, provider: str, topup: TopUp, *, now: float) -> int | None:
        """Credit a confirmed payment; the transfer id, or None if it was credited before."""
        chosen = self.providers.get(provider)
        if chosen is None:
            raise PaymentRefused(
                f"no payment provider {provider!r}; this anchor has {sorted(self.providers)}"
            )
        payment = await chosen.confirm(topup)
        return await self.store.transfer(
            kind="topup",
            ref=f"topup:{provider}:{payment.external_ref}"[:128],
            memo=f"{provider} payment {payment.external_ref}",
            source=f"world:payments:{provider}",
            target=topup.account_id,
            amount_micro=payment.amount_micro,
            now=now,
        )

"""`VoucherBook`: the sans-I/O check that a request's voucher and spend ticket pay for it, and the
reservation of the most it may cost until its receipt is signed; `UnpaidPolicy`: who may run here
unpaid; `max_price_micro`: that worst case at the node's prices. See the package's docstring.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from p2pfaas import signing
from p2pfaas.channels import CREDIT_CALLS, behind_problem
from p2pfaas.errors import Refused, SignatureError
from p2pfaas.identity import PublicKey
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.messages import BundleHeader, Delegation, InvokeRequest, Receipt, Voucher
from p2pfaas.node.payments.spends import (
    FORGET_AFTER_S,
    FORGET_EVERY_S,
    LocalSpends,
    PaymentRequired,
    SpendStore,
)
from p2pfaas.pricing import Prices
from p2pfaas.rpc import Forbidden
from p2pfaas.tickets import request_ticket_problem

log = logging.getLogger(__name__)

VOUCHERS_PER_LESSEE = 256  # a lessee's latest vouchers counted together against its channels' credit


@dataclass(frozen=True)
class UnpaidPolicy:
    """Who may run functions on this node without a voucher. The default: nobody.

    `owners`: a function's owner may run its own functions unpaid (a devnet, where the volunteer
    and the lessee are the same people). `keys`: ids of lessee keys (`KeyPair.key_id`) that may
    run anything unpaid, e.g. the volunteer's own.
    """

    owners: bool = False
    keys: frozenset[str] = frozenset()

    def check(self, header: BundleHeader, caller_key: bytes) -> None:
        """Return if `caller_key` may run `header`'s function unpaid here, else raise PaymentRequired."""
        if self.owners and header.signer == caller_key:
            return
        if self.keys and PublicKey(caller_key).key_id in self.keys:
            return
        if self.owners:  # a devnet: a stranger is not let in (403), rather than asked to pay
            raise Forbidden("only the function's owner may invoke it without a voucher")
        raise PaymentRequired("this node runs paid invocations only: attach a voucher")

    def describe(self) -> str:
        """What the node's adverts say: "none", "owners", "keys", or "owners+keys"."""
        parts = [name for name, on in (("owners", self.owners), ("keys", bool(self.keys))) if on]
        return "+".join(parts) or "none"


@dataclass(frozen=True)
class _Hold:
    voucher_id: str
    cost_micro: int
    expires_at: float


@dataclass
class VoucherBook:
    """Per-voucher spend on this node. Fed `now` by its caller; no clock, no I/O.

    Several books (one per worker process) may share one `spends` store: each keeps only the
    reservations it made, and the store keeps their sum in the book's `worker` column (the index of
    its process), which the node drops when that process dies.
    """

    anchor_key: bytes
    fees: FeePolicy
    node_id: str  # this node's: the payee (or the end of the delegations) a paid request must name
    expiry_margin_s: float = 5.0  # a voucher must outlive the invocation's timeout by this much
    unpaid: UnpaidPolicy = field(default_factory=UnpaidPolicy)
    spends: SpendStore = field(default_factory=LocalSpends)
    worker: int = 0  # this process's index among the node's worker processes
    # What the voucher's lessee has signed on this node's channel (`p2pfaas.channels`); None: the
    # book does not hold lessees to their channels (its own unit tests only).
    signed_micro: Callable[[str], int] | None = None
    _holds: dict[str, _Hold] = field(default_factory=dict)  # invocation id -> its reservation
    # Each lessee key's vouchers served here, latest last (at most `VOUCHERS_PER_LESSEE`): the
    # credit a lessee behind on its channels gets is one, across all of them. Hand-written rather
    # than a cachetools LRUCache: a voucher still behind must never be the one evicted.
    _vouchers_of: dict[bytes, OrderedDict[str, None]] = field(default_factory=dict)
    _invocations: dict[str, str] = field(default_factory=dict)  # invocation id -> voucher id
    _forget_at: float = 0.0  # `now` of the next look for long-expired vouchers

    def authorize(
        self,
        request: InvokeRequest,
        header: BundleHeader,
        caller_key: bytes,
        *,
        max_price_micro: int,
        now: float,
        delegations: tuple[Delegation, ...] = (),
    ) -> None:
        """Accept `request` (reserving its most costly outcome, within the lessee's cap), reaching
        this node through `delegations`, or raise Forbidden/PaymentRequired."""
        voucher = request.voucher
        if voucher is None:
            self.unpaid.check(header, caller_key)
            return
        self._check(voucher, caller_key)
        problem = request_ticket_problem(request, caller_key, node_id=self.node_id, delegations=delegations)
        if problem is not None:  # the anchor would refuse this receipt: never run it for free
            raise Forbidden(f"the paid request {problem}")
        assert request.ticket is not None
        if request.ticket.max_price_micro < max_price_micro:
            # The node would run it at a loss (the anchor pays no more than the cap), or for free.
            raise PaymentRequired(
                f"the spend ticket caps this invocation at {request.ticket.max_price_micro} micro-credits, "
                f"and at this node's prices it may cost up to {max_price_micro}: raise the wallet's price "
                "ceilings, or use a cheaper node"
            )
        if now + request.timeout_s + self.expiry_margin_s > voucher.expires_at:
            raise PaymentRequired(f"voucher {voucher.voucher_id} expires before this invocation could finish")
        self._forget_old(now)
        if request.invocation_id in self._holds:
            return  # a retry or forward of an invocation accepted and running: reserved once
        if request.invocation_id in self._invocations:
            # It ran here and was charged; the anchor pays an id once, so running it again (with a
            # new payload, once the router's cache of results has forgotten it) would be free.
            raise Refused("this invocation id already ran on this node; use a new id", status=409)
        cost = self.fees.charge_micro(max_price_micro)
        self._check_channels(voucher, cost)
        left = self.spends.reserve(
            voucher.voucher_id,
            budget_micro=voucher.budget_micro,
            expires_at=voucher.expires_at,
            cost_micro=cost,
            worker=self.worker,
            now=now,
        )
        if left is not None:
            raise PaymentRequired(
                f"voucher {voucher.voucher_id} has {left} micro-credits left on this node; "
                f"this invocation may cost up to {cost}"
            )
        self._holds[request.invocation_id] = _Hold(voucher.voucher_id, cost, voucher.expires_at)
        self._invocations[request.invocation_id] = voucher.voucher_id
        self._served(voucher)

    def charged(self, receipt: Receipt) -> int:
        """The invocation ran and its receipt says what it costs: settle the reservation to that.

        Returns what was charged to the voucher (0 if it held no reservation for this receipt).
        """
        hold = self._holds.get(receipt.invocation_id)
        if hold is None or hold.voucher_id != receipt.voucher_id:
            return 0
        del self._holds[receipt.invocation_id]
        # The executor bounds usage by the timeout, so the real charge fits the reservation.
        full = self.fees.charge_micro(receipt.price_micro)
        charge = min(hold.cost_micro, full)
        price = receipt.price_micro if charge == full else charge  # capped: the price it covers
        self.spends.settle(
            hold.voucher_id, reserved_micro=hold.cost_micro, charge_micro=charge, worker=self.worker,
            price_micro=price,
        )  # fmt: skip
        return charge

    def spend_of(self, voucher_id: str) -> tuple[int, float] | None:
        """(budget, expiry) of a voucher this node has accepted."""
        spend = self.spends.get(voucher_id)
        return None if spend is None else (spend.budget_micro, spend.expires_at)

    def release(self, invocation_id: str) -> None:
        """The invocation never ran (refused later, crashed before starting): free its reservation."""
        self._invocations.pop(invocation_id, None)
        hold = self._holds.pop(invocation_id, None)
        if hold is not None:
            self.spends.release(hold.voucher_id, reserved_micro=hold.cost_micro, worker=self.worker)

    def remaining_micro(self, voucher_id: str) -> int | None:
        spend = self.spends.get(voucher_id)
        return None if spend is None else spend.remaining_micro

    def _check_channels(self, voucher: Voucher, cost_micro: int) -> None:
        """Refuse (402) a lessee whose channels here, over all its vouchers, are more than
        `CREDIT_CALLS` worst-case calls behind what this node charged them: it is not paying for
        the results it gets, and a fresh voucher does not give it a fresh credit. Nor do many: a
        voucher joins the lessee's set only once a call on it is reserved (`_served`), and a
        voucher still behind is never dropped from the set to make room."""
        if self.signed_micro is None:
            return
        served = self._vouchers_of.get(voucher.lessee_key, OrderedDict())
        behind = 0  # each voucher's own shortfall: a surplus signed on one pays for no other
        for voucher_id in (*served, *(() if voucher.voucher_id in served else (voucher.voucher_id,))):
            voucher_owed, voucher_signed = self._channel(voucher_id)
            behind += max(0, voucher_owed - voucher_signed)
        problem = behind_problem(owed_micro=behind, signed_micro=0, credit_micro=CREDIT_CALLS * cost_micro)
        if problem is not None:
            raise PaymentRequired(problem)
        full = voucher.voucher_id not in served and len(served) >= VOUCHERS_PER_LESSEE
        if full and not any(self._settled_up(voucher_id) for voucher_id in served):
            raise PaymentRequired(
                f"this lessee has {len(served)} vouchers here with results it has not signed for: "
                "send their channel tickets to POST /v1/channels, or use one of them"
            )

    def _served(self, voucher: Voucher) -> None:
        """A call on `voucher` is reserved: count it among its lessee's vouchers (latest last),
        dropping the oldest ones whose channels are settled up beyond `VOUCHERS_PER_LESSEE`."""
        if self.signed_micro is None:
            return
        served = self._vouchers_of.setdefault(voucher.lessee_key, OrderedDict())
        served[voucher.voucher_id] = None
        served.move_to_end(voucher.voucher_id)
        if len(served) > VOUCHERS_PER_LESSEE:
            for voucher_id in [v for v in served if self._settled_up(v)][: len(served) - VOUCHERS_PER_LESSEE]:
                del served[voucher_id]

    def _channel(self, voucher_id: str) -> tuple[int, int]:
        """(the node prices of its calls charged here, what its lessee signed for them) of the
        voucher's channel with this node: both in node prices, as the lessee signs them (the
        anchor's fee is rounded per receipt on one side and would be once on the other)."""
        spend = self.spends.get(voucher_id)
        if spend is None or self.signed_micro is None:  # forgotten: long expired, the anchor released it
            return 0, 0
        return spend.priced_micro, self.signed_micro(voucher_id)

    def _settled_up(self, voucher_id: str) -> bool:
        """Signed for everything charged, and nothing still running on it (a call in flight would
        charge it again once its voucher had left the count)."""
        spend = self.spends.get(voucher_id)
        if spend is not None and spend.committed_micro > spend.charged_micro:
            return False
        owed, signed = self._channel(voucher_id)
        return owed <= signed

    def _check(self, voucher: Voucher, caller_key: bytes) -> None:
        if voucher.signer != self.anchor_key:
            raise Forbidden("the voucher is not signed by this network's anchor")
        try:
            signing.verify(voucher)
        except SignatureError:
            raise Forbidden("the voucher's signature does not verify") from None
        if voucher.lessee_key != caller_key:
            raise Forbidden("the voucher was issued to another key than the one that signed the request")

    def _forget_old(self, now: float) -> None:
        if now >= self._forget_at:
            self._forget_at = now + FORGET_EVERY_S
            self.spends.forget(now=now)
            stale = [iid for iid, hold in self._holds.items() if hold.expires_at + FORGET_AFTER_S < now]
            for invocation_id in stale:
                del self._holds[invocation_id]
                self._invocations.pop(invocation_id, None)
            for lessee_key, served in list(self._vouchers_of.items()):  # drop the forgotten vouchers
                for voucher_id in [v for v in served if self.spends.get(v) is None]:
                    del served[voucher_id]
                if not served:
                    del self._vouchers_of[lessee_key]
        if len(self._invocations) > 100_000:  # ids of settled invocations: only for dedupe
            for invocation_id in list(self._invocations)[:50_000]:
                del self._invocations[invocation_id]


def max_price_micro(prices: Prices, *, timeout_s: float, memory_mb: int, cpus: float) -> int:
    """The most an invocation can cost at `prices`: all its CPU share and memory for its whole timeout.

    Doubled, plus a second: the executor stops a function at its timeout, but stopping takes a
    moment and the receipt bills what was metered, which the reservation must still cover.
    """
    wall_ms = int((2 * timeout_s + 1) * 1000)
    return prices.charge_micro(cpu_ms=int(wall_ms * cpus) + 1, peak_memory_mb=memory_mb, wall_ms=wall_ms)

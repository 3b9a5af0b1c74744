"""Issuing spending vouchers: the anchor's signing key, and budget moved into escrow then signed.

The voucher-signing key lives in the database (`anchor_keys`), created by whichever anchor first
needs it, so every anchor behind one database signs with the same key and nodes trust one public
key (`GET /v1/anchor-key`). A voucher's id is derived from the user and the client's request id:
asking again after a lost answer returns the same voucher and holds the budget once.

Not here: who may ask (the HTTP layer checks the token and that the lessee key is the user's own),
nor how nodes check vouchers (`p2pfaas.node.payments`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas import signing
from p2pfaas.db import Database
from p2pfaas.db.schema import anchor_keys
from p2pfaas.db.upsert import insert_ignore
from p2pfaas.errors import LocalError
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.messages import Voucher

__all__ = ["VoucherIssuer", "VoucherLimits", "load_anchor_keys", "voucher_id_for"]

VOUCHER_KEY_NAME = "vouchers"


async def load_anchor_keys(db: Database, *, now: float) -> KeyPair:
    """The anchor's voucher-signing key pair, created (from the OS's randomness) if there is none."""
    candidate = os.urandom(32)

    async def work(connection: AsyncConnection) -> bytes:
        row = {"name": VOUCHER_KEY_NAME, "seed": candidate, "created_at": now}
        await connection.execute(insert_ignore(connection.dialect.name, anchor_keys, row, key=["name"]))
        seed = await connection.scalar(
            sa.select(anchor_keys.c.seed).where(anchor_keys.c.name == VOUCHER_KEY_NAME)
        )
        assert seed is not None
        return bytes(seed)

    return KeyPair.from_seed(await db.run(work, what="load the anchor key"))


def voucher_id_for(user_id: int, request_id: str) -> str:
    """The voucher id for a user's request: the same request always names the same voucher."""
    return hashlib.sha256(f"{user_id}\0{request_id}".encode()).hexdigest()[:32]


class VoucherRefused(LocalError):
    """A voucher request outside the anchor's limits."""


@dataclass(frozen=True)
class VoucherLimits:
    max_ttl_s: float = 24 * 3600.0
    min_ttl_s: float = 10.0
    max_budget_micro: int = 10**15  # a billion credits: beyond this a request is a typo


class VoucherIssuer:
    """Signs vouchers with the anchor key after the ledger has moved their budget into a hold."""

    def __init__(self, store: LedgerStore, keys: KeyPair, *, limits: VoucherLimits | None = None) -> None:
        self.store = store
        self.keys = keys
        self.limits = limits or VoucherLimits()

    async def issue(
        self,
        *,
        user_id: int,
        lessee_account_id: int,
        lessee_key: bytes,
        budget_micro: int,
        ttl_s: float,
        request_id: str,
        now: float,
    ) -> Voucher:
        """Hold `budget_micro` of the lessee's credits and return the signed voucher (idempotent).

        Raises `VoucherRefused` for a budget or lifetime outside the limits and
        `InsufficientFunds` when the account cannot cover the budget.
        """
        if not 0 < budget_micro <= self.limits.max_budget_micro:
            raise VoucherRefused(f"budget must be within 1..{self.limits.max_budget_micro} micro-credits")
        if not self.limits.min_ttl_s <= ttl_s <= self.limits.max_ttl_s:
            raise VoucherRefused(
                f"voucher lifetime must be within {self.limits.min_ttl_s}..{self.limits.max_ttl_s} s"
            )
        if not request_id or len(request_id) > 64:
            raise VoucherRefused("request id must be 1..64 characters")
        unsigned = Voucher(
            voucher_id=voucher_id_for(user_id, request_id),
            lessee_key=lessee_key,
            budget_micro=budget_micro,
            expires_at=now + ttl_s,
            signer=b"",
            signature=b"",
        )
        voucher = signing.sign(unsigned, self.keys)
        return await self.store.open_voucher(
            voucher, lessee_account_id=lessee_account_id, owner_user_id=user_id, now=now
        )

"""Which ledger account a node earns into, and the ids of the anchor's own accounts, cached.

A node earns into its claiming volunteer's account (`key_owners`), else into an account of its own
(`node_account_name`), which its volunteer takes over, with what it holds, once the claim is made.
A claim is permanent (first come), so a claimed node's account is cached for good; an unclaimed
node's for `UNCLAIMED_RECHECK_S`, after which a new claim takes effect.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, key_owners, users
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.ledger.postings import ensure_account

__all__ = ["UNCLAIMED_RECHECK_S", "AccountIds", "node_account_name"]

UNCLAIMED_RECHECK_S = 30.0


def node_account_name(node_id: str) -> str:
    return f"node:{node_id}"


class AccountIds:
    """Account ids by name (they never change), and each node's earning account."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._account_ids: dict[str, int] = {}
        self._unclaimed: dict[str, tuple[int, float]] = {}  # node id -> (its own account, recheck at)

    def forget(self) -> None:
        """Drop what is cached (what `UNCLAIMED_RECHECK_S`, or an anchor restart, does)."""
        self._account_ids.clear()
        self._unclaimed.clear()

    async def account_id(self, name: str, kind: AccountKind, *, now: float) -> int:
        # Created in a transaction of its own, so the settlement's first read is its voucher lock
        # (under REPEATABLE READ the snapshot then starts after the lock is ours).
        if name not in self._account_ids:

            async def work(connection: AsyncConnection) -> int:
                return await ensure_account(connection, name, kind, owner_user_id=None, now=now)

            self._account_ids[name] = await self.db.run(work, what=f"open account {name}")
        return self._account_ids[name]

    async def earning_account(self, node_id: str, *, now: float) -> int:
        """Where node `node_id` earns: its claiming volunteer's account, else an account of its own.

        A claim is permanent (`key_owners` is first-come), so a claimed node's account is cached for
        good; an unclaimed node's for `UNCLAIMED_RECHECK_S`, after which a new claim takes effect.
        """
        cached = self._account_ids.get(node_account_name(node_id))
        if cached is not None:
            return cached
        unclaimed = self._unclaimed.get(node_id)
        if unclaimed is not None and now < unclaimed[1]:
            return unclaimed[0]

        async def owner_account(connection: AsyncConnection) -> int | None:
            query = (
                sa.select(users.c.user_id, users.c.account_id)
                .select_from(key_owners.join(users, users.c.user_id == key_owners.c.user_id))
                .where(key_owners.c.key_id == node_id, key_owners.c.kind == "node")
            )
            owner = (await connection.execute(query)).first()
            if owner is None:
                return None
            # What the node earned before its claim is its volunteer's too: hand over that account
            # (listed with the volunteer's balances, paid out like them).
            await connection.execute(
                accounts.update()
                .where(accounts.c.name == node_account_name(node_id), accounts.c.owner_user_id.is_(None))
                .values(owner_user_id=owner.user_id)
            )
            return int(owner.account_id)

        claimed = await self.db.run(owner_account, what="find the node's owner")
        if claimed is not None:
            self._account_ids[node_account_name(node_id)] = int(claimed)
            return int(claimed)

        async def own(connection: AsyncConnection) -> int:
            name = node_account_name(node_id)
            return await ensure_account(connection, name, AccountKind.NODE, owner_user_id=None, now=now)

        account_id = await self.db.run(own, what="open the node's account")
        self._unclaimed[node_id] = (account_id, now + UNCLAIMED_RECHECK_S)
        return account_id

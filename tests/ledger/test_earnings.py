"""What a node earned for a call, and taking it back (`p2pfaas.ledger.earnings`), on SQLite and
MariaDB: where a settlement's payment is, whom it paid, earnings maturing, and a lie clawed back once."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.errors import Refused
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.earners import node_account_name
from p2pfaas.ledger.earnings import check_matured, claw_back, credited_account, was_paid_to
from p2pfaas.ledger.policy import AccountKind, FeePolicy
from p2pfaas.ledger.settlement import Settler, claim_of
from p2pfaas.ledger.store import LedgerStore
from tests.ledger.conftest import LESSEE, T0, balance, funded_voucher, keys, receipt

NODE, OTHER = keys("node"), keys("other")


async def test_a_settled_call_is_found_matures_and_a_lie_is_clawed_back_once(
    store: LedgerStore, db: Database
) -> None:
    lessee = await funded_voucher(store, "v1", 1000, grant=1000)
    calls = [
        claim_of(receipt(f"i{n}", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100)) for n in (1, 2)
    ]
    await Settler(db, fees=FeePolicy(fee_ppm=0)).settle(NODE.key_id, calls, now=T0)
    node = await store.open_account(node_account_name(NODE.key_id), AccountKind.NODE, now=T0)

    async def look(connection: AsyncConnection) -> tuple[object, ...]:
        return (
            await credited_account(connection, "i1"),
            await credited_account(connection, "never"),
            await was_paid_to(connection, "i1", NODE.key_id),
            await was_paid_to(connection, "i1", OTHER.key_id),
            await was_paid_to(connection, "never", NODE.key_id),
        )

    assert await db.run(look, what="look", write=False) == ((node, 100), None, True, False, False)

    async def matured(amount: int, since: float) -> None:
        await db.run(lambda c: check_matured(c, node, amount, since=since), what="mature")

    await matured(200, T0 + 1)  # earned before `since`: matured
    with pytest.raises(Refused, match="only 0 of this account's 200") as young:
        await matured(1, T0 - 1)
    assert young.value.status == 409

    async def claw(node_id: str) -> int:
        return await db.run(
            lambda c: claw_back(c, "i1", node_id=node_id, excess_micro=60, why="lied", now=T0 + 5),
            what="claw",
        )

    assert await claw(OTHER.key_id) == 0  # never paid for it
    assert await claw(NODE.key_id) == 60
    assert await claw(NODE.key_id) == 0  # once
    assert (await balance(store, node), await balance(store, lessee)) == (140, 60)
    assert await audit(db) == []

"""Which account a node earns into (`p2pfaas.ledger.earners`): its own until its volunteer claims it,
then the volunteer's, with what it holds."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import key_owners, users
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind, FeePolicy, ReceiptClaim
from p2pfaas.ledger.settlement import Settler, claim_of, node_account_name
from p2pfaas.ledger.store import LedgerStore
from tests.ledger.conftest import T0, funded_voucher, keys, receipt

NODE, LESSEE = keys("node"), keys("lessee")


async def test_a_node_earns_for_itself_until_claimed_then_for_its_volunteer(
    store: LedgerStore, db: Database
) -> None:
    await funded_voucher(store, "v1", 10_000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))

    def batch(*ids: str) -> list[ReceiptClaim]:
        return [claim_of(receipt(i, node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100)) for i in ids]

    await settler.settle(NODE.key_id, batch("a", "b"), now=T0)
    own = await store.open_account(node_account_name(NODE.key_id), AccountKind.NODE, now=T0)
    volunteer = await store.user_account(7, AccountKind.VOLUNTEER, now=T0)

    async def claim(connection: AsyncConnection) -> None:
        await connection.execute(
            users.insert().values(
                user_id=7,
                username="vol",
                password_hash="-",
                role="volunteer",
                account_id=volunteer,
                created_at=T0,
            )
        )
        await connection.execute(
            key_owners.insert().values(
                key_id=NODE.key_id, user_id=7, public_key=NODE.public.raw, kind="node", created_at=T0
            )
        )

    await db.run(claim, what="claim the node")
    await settler.settle(NODE.key_id, batch("c"), now=T0 + 1)  # not yet: the claim is seen within 30 s
    await settler.settle(NODE.key_id, batch("d", "e"), now=T0 + 60)
    assert (await store.account(own)).balance_micro == 300
    assert (await store.account(volunteer)).balance_micro == 200
    assert {a.account_id for a in await store.accounts_of(7)} == {own, volunteer}  # his to pay out
    assert await audit(db) == []

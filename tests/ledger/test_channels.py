"""Payment-channel rows (`p2pfaas.ledger.channels`) on SQLite and MariaDB: the tickets a lessee hands
the anchor raise them, only upwards, and only when signed by the voucher's lessee."""

from __future__ import annotations

import dataclasses

import pytest

from p2pfaas import channels
from p2pfaas.db import Database
from p2pfaas.errors import NotFound, SignatureError
from p2pfaas.ledger.channels import record_tickets
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.messages import ChannelTicket
from tests.ledger.conftest import LESSEE, T0, funded_voucher, keys

NODE, OTHER = keys("node"), keys("other")


async def test_tickets_raise_a_channel_once_and_never_lower_it(store: LedgerStore, db: Database) -> None:
    await funded_voucher(store, "v1", 1000)

    def ticket(seq: int, total: int) -> ChannelTicket:
        return channels.sign_channel("v1", NODE.key_id, seq=seq, total_micro=total, keys=LESSEE)

    assert await record_tickets(db, [ticket(1, 100), ticket(2, 250)], now=T0) == 1  # the best of them
    assert await record_tickets(db, [ticket(2, 250)], now=T0 + 1) == 0  # the same again
    assert await record_tickets(db, [ticket(1, 100)], now=T0 + 2) == 0  # an older, lower one
    assert await record_tickets(db, [ticket(3, 400)], now=T0 + 3) == 1


async def test_a_ticket_of_another_key_or_for_no_voucher_is_refused(store: LedgerStore, db: Database) -> None:
    await funded_voucher(store, "v1", 1000)
    strangers = channels.sign_channel("v1", NODE.key_id, seq=1, total_micro=10, keys=OTHER)
    with pytest.raises(SignatureError, match="not its lessee's"):
        await record_tickets(db, [strangers], now=T0)
    nowhere = channels.sign_channel("v9", NODE.key_id, seq=1, total_micro=10, keys=LESSEE)
    with pytest.raises(NotFound, match="no voucher"):
        await record_tickets(db, [nowhere], now=T0)
    good = channels.sign_channel("v1", NODE.key_id, seq=1, total_micro=10, keys=LESSEE)
    forged = dataclasses.replace(good, total_micro=10_000)  # its signature kept
    with pytest.raises(SignatureError):
        await record_tickets(db, [forged], now=T0)

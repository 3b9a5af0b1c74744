"""`NodePayments`, a node's payments as one service: what it restores when it starts."""

from __future__ import annotations

import random
import time
from pathlib import Path

import aiohttp

from p2pfaas.node.payments.node_payments import NodePayments
from p2pfaas.node.payments.spend_log import SpendLog
from p2pfaas.node.payments.spends import LocalSpends
from p2pfaas.pricing import Prices
from tests.node.payments.conftest import keys

NODE = keys("node")


async def test_only_the_restoring_payments_load_the_spend_log(tmp_path: Path) -> None:
    """Workers share the primary's store and log: only the primary loads the log, when it starts."""
    expires_at = time.time() + 600
    SpendLog(tmp_path / "voucher-spend.log").append(
        "v1", budget_micro=1000, expires_at=expires_at, charge_micro=300
    )
    store = LocalSpends()
    async with aiohttp.ClientSession() as session:
        for restore in (False, True):
            payments = NodePayments(
                anchor_url="http://127.0.0.1:9",  # unreachable: the key is never learned
                keys=NODE,
                session=session,
                work_dir=tmp_path,
                prices=Prices(),
                cpus_per_instance=1.0,
                rng=random.Random(1),
                spends=store,
                restore=restore,
            )
            async with payments:
                pass
            spend = store.get("v1")
            if restore:
                assert spend is not None and spend.committed_micro == 300
            else:
                assert spend is None

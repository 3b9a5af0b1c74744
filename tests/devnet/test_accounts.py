"""Paying on a devnet (`p2pfaas.devnet.accounts`) against a real anchor on the devnet's own database:
the operator made once, the demo lessee funded once per key, a wallet that buys vouchers."""

from __future__ import annotations

from pathlib import Path

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.devnet.accounts import DEMO_GRANT_MICRO, devnet_wallet
from p2pfaas.identity import KeyPair


async def test_the_demo_lessee_is_funded_once_per_key_and_its_wallet_buys_vouchers(tmp_path: Path) -> None:
    keys = KeyPair.generate()
    async with AnchorServer(f"sqlite+aiosqlite:///{(tmp_path / 'anchor.db').resolve()}", port=0) as anchor:
        for _ in range(2):  # the demo run twice: the same operator, lessee and grant
            async with devnet_wallet(anchor.url, tmp_path, keys) as wallet:
                voucher = await wallet.voucher()
                assert voucher.lessee_key == keys.public.raw and voucher.budget_micro > 0
        assert (tmp_path / "accounts.password").stat().st_mode & 0o777 == 0o600
        async with devnet_wallet(anchor.url, tmp_path, KeyPair.generate()) as other:
            assert (await other.voucher()).budget_micro <= DEMO_GRANT_MICRO

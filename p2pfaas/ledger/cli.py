"""Paying from the command line: `p2pfaas fn invoke NAME --pay CREDITS`.

With `--pay`, the invocation carries a voucher bought with the logged-in account's credits
(`p2pfaas account login`; the token file or P2PFAAS_TOKEN), of CREDITS a voucher. The voucher and
what was spent from it are kept beside the token (`~/.p2pfaas/voucher-<key id>.json`), so the
next command reuses it rather than holding a new budget. Accounts, balances, grants and payouts
have their own commands (`p2pfaas account ...`, `p2pfaas/client/account_cli.py`).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pfaas.client import AsyncClient

__all__ = ["add_pay_option", "paying"]

VOUCHER_TTL_S = 3600.0


def add_pay_option(parser: Any) -> None:
    parser.add_argument(
        "--pay",
        metavar="CREDITS",
        default="",
        help="pay with vouchers of CREDITS each from your account (`p2pfaas account login` first); "
        "without it only your own functions run, unpaid",
    )


@asynccontextmanager
async def paying(args: argparse.Namespace, client: AsyncClient) -> AsyncIterator[None]:
    """Give `client` a wallet if `args.pay` asks for one; a no-op otherwise."""
    if not getattr(args, "pay", ""):
        yield
        return
    from p2pfaas.client.account import AccountClient
    from p2pfaas.client.account_cli import credits_to_micro, load_token, token_path
    from p2pfaas.client.wallet import Wallet

    budget_micro = credits_to_micro(args.pay)
    state = token_path().parent / f"voucher-{client.keys.key_id[:16]}.json"
    async with AccountClient(client.anchor_url, token=load_token()) as account:
        client.wallet = Wallet(
            client.keys, account.voucher, budget_micro=budget_micro, ttl_s=VOUCHER_TTL_S, state_path=state
        )
        yield

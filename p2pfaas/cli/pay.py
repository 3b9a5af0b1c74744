"""Paying from the command line: `p2pfaas fn invoke NAME --pay CREDITS`.

With `--pay`, the invocation carries a voucher bought with the logged-in account's credits
(`p2pfaas account login`; the token file or P2PFAAS_TOKEN), of CREDITS a voucher. The voucher and
what was spent from it are kept beside the token (`~/.p2pfaas/voucher-<key id>.json`), so the
next command reuses it rather than holding a new budget. Accounts, balances, grants and payouts
have their own commands (`p2pfaas account ...`, `p2pfaas/cli/account.py`).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pfaas.client import AsyncClient

__all__ = ["add_pay_option", "paying"]


def add_pay_option(parser: Any) -> None:
    parser.add_argument(
        "--pay",
        metavar="CREDITS",
        default="",
        help="pay with vouchers of CREDITS each from your account (`p2pfaas account login` first); "
        "without it only nodes that let you run unpaid (a devnet's) serve you",
    )
    parser.add_argument(
        "--max-price",
        metavar="MICRO",
        type=int,
        default=100,
        help="with --pay: the most you pay a node per CPU-second, in micro-credits (and a tenth of it "
        "per GB-second of memory); each call's spend ticket caps its price at this over the "
        "function's timeout (default: %(default)s)",
    )


@asynccontextmanager
async def paying(args: argparse.Namespace, client: AsyncClient) -> AsyncIterator[None]:
    """Give `client` a wallet if `args.pay` asks for one; a no-op otherwise."""
    if not getattr(args, "pay", ""):
        yield
        return
    from p2pfaas.cli.account import credits_to_micro
    from p2pfaas.client.account import AccountClient
    from p2pfaas.client.wallet import Wallet
    from p2pfaas.environment import load_token
    from p2pfaas.errors import LocalError

    budget_micro = credits_to_micro(args.pay)
    async with AccountClient(client.anchor_url, token=load_token()) as account:
        if not 0 <= args.max_price <= 10**9:
            raise LocalError("--max-price must be between 0 and 10^9 micro-credits per CPU-second")
        client.wallet = Wallet.of_account(
            client.keys, account.voucher, budget_micro=budget_micro, max_price_per_cpu_s_micro=args.max_price
        )
        yield

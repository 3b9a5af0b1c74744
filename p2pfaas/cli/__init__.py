"""The `p2pfaas` command line: argument parsing and printing over the library.

main.py     the parser and every subcommand's entry (`p2pfaas keys|fn|anchor|node|devnet|sim ...`)
account.py  `p2pfaas account ...`: sign-up, login, balances, grants and payouts
pay.py      `--pay CREDITS`: a voucher bought with the logged-in account's credits
"""

from p2pfaas.cli.main import build_parser, main

__all__ = ["build_parser", "main"]

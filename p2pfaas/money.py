"""Money amounts: integer micro-credits, and the one bound every amount and balance stays within.

`MAX_AMOUNT_MICRO` (10**15 micro-credits, 10**9 credits) is far inside a signed 64-bit BIGINT
(about 9.2 * 10**18), so no sum of two bounded values can overflow a column or SQLite's integer
arithmetic (which silently turns an overflowing sum into a float). Every amount on the wire
(grants, top-ups, vouchers, receipts, payouts), every amount the ledger store moves, and every
balance (`accounts.balance_micro`, negative only for external accounts) stays within
`-MAX_AMOUNT_MICRO..MAX_AMOUNT_MICRO`; the database enforces the same bound by CHECK constraints
(revision 0004). This module imports nothing of the project, so the lowest layers may use it.
"""

from __future__ import annotations

__all__ = ["MAX_AMOUNT_MICRO", "MICRO", "check_amount"]

MICRO = 1_000_000  # micro-credits per credit
MAX_AMOUNT_MICRO = 10**15  # 10**9 credits: the largest amount, and the largest |balance|


def check_amount(name: str, value: int, *, allow_zero: bool = False) -> None:
    """Raise ValueError unless `value` is an int in 1..MAX_AMOUNT_MICRO (0..MAX with `allow_zero`)."""
    low = 0 if allow_zero else 1
    if type(value) is not int or not low <= value <= MAX_AMOUNT_MICRO:
        raise ValueError(f"{name} must be an integer within {low}..{MAX_AMOUNT_MICRO}, got {value!r}")

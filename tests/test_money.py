"""Money amounts (`p2pfaas.money`): integers within 1..MAX_AMOUNT_MICRO, or 0.. when zero is allowed."""

from __future__ import annotations

import pytest

from p2pfaas.money import MAX_AMOUNT_MICRO, MICRO, check_amount


def test_amounts_within_the_bound_pass() -> None:
    for value in (1, MICRO, MAX_AMOUNT_MICRO):
        check_amount("amount", value)
    check_amount("amount", 0, allow_zero=True)
    assert MAX_AMOUNT_MICRO < 2**63 // 2  # two bounded values never overflow a BIGINT


@pytest.mark.parametrize("value", [0, -1, MAX_AMOUNT_MICRO + 1, 2**63, 1.0, True, "1"])
def test_anything_else_is_a_value_error_naming_the_field(value: object) -> None:
    with pytest.raises(ValueError, match=r"budget must be an integer within 1\.\.10+, got"):
        check_amount("budget", value)  # type: ignore[arg-type]


def test_zero_allowed_still_refuses_negatives_and_the_unbounded() -> None:
    for value in (-1, MAX_AMOUNT_MICRO + 1):
        with pytest.raises(ValueError, match=r"within 0\.\."):
            check_amount("balance", value, allow_zero=True)

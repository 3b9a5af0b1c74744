"""The sans-I/O ledger rules: fees, sign rules, payout states, batch admission."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.errors import LocalError
from p2pfaas.ledger.policy import (
    FeePolicy,
    IllegalTransition,
    PayoutState,
    ReceiptClaim,
    Refusal,
    VoucherView,
    admit_batch,
    may_go_negative,
    next_payout_state,
)

KEY = b"k" * 32


def claim(invocation_id: str, price: int, voucher_id: str = "v", issued_at: float = 0.0) -> ReceiptClaim:
    return ReceiptClaim(invocation_id, voucher_id, KEY, price, issued_at)


def view(
    remaining: int, voucher_id: str = "v", *, open_: bool = True, expires_at: float = 100.0
) -> VoucherView:
    return VoucherView(voucher_id, KEY, remaining, expires_at, open_)


def test_fee_rounds_up_and_volunteer_keeps_the_whole_price() -> None:
    fees = FeePolicy(fee_ppm=50_000)
    assert fees.fee_micro(100) == 5
    assert fees.fee_micro(1) == 1  # rounding never favours the lessee at the anchor's cost
    assert fees.charge_micro(100) == 105
    assert FeePolicy(fee_ppm=0).charge_micro(7) == 7
    with pytest.raises(LocalError):
        FeePolicy(fee_ppm=-1)


def test_only_external_accounts_may_go_negative() -> None:
    assert may_go_negative("external")
    assert not any(map(may_go_negative, ["lessee", "volunteer", "node", "hold", "anchor", "clearing"]))


def test_payout_state_machine() -> None:
    assert next_payout_state("pending", "paid") is PayoutState.PAID
    assert next_payout_state("pending", "failed") is PayoutState.FAILED
    for current, wanted in [
        ("paid", "failed"),
        ("failed", "paid"),
        ("paid", "pending"),
        ("pending", "pending"),
    ]:
        with pytest.raises(IllegalTransition):
            next_payout_state(current, wanted)
    with pytest.raises(ValueError):
        next_payout_state("pending", "refunded")


def test_admission_pays_in_order_while_the_hold_lasts() -> None:
    fees = FeePolicy(fee_ppm=0)
    out = admit_batch(
        [claim("a", 40), claim("b", 40), claim("c", 40), claim("d", 20)],
        vouchers={"v": view(100)},
        settled=frozenset(),
        fees=fees,
        expiry_skew_s=0,
    )
    assert [c.invocation_id for c, _ in out.paid] == ["a", "b", "d"]
    assert out.refused == {"c": Refusal.OVER_BUDGET}
    assert out.spent_micro == {"v": 100}


def test_admission_refusals() -> None:
    out = admit_batch(
        [
            claim("dup", 1),
            claim("x", 1, voucher_id="missing"),
            claim("closed", 1, voucher_id="c"),
            claim("late", 1, issued_at=200.0),
            claim("free", 0),
            claim("same", 1),
            claim("same", 1),
            ReceiptClaim("other", "v", b"o" * 32, 1, 0.0),
        ],
        vouchers={"v": view(100), "c": view(100, "c", open_=False)},
        settled=frozenset({"dup"}),
        fees=FeePolicy(),
        expiry_skew_s=30.0,
    )
    assert out.refused == {
        "dup": Refusal.DUPLICATE,
        "x": Refusal.UNKNOWN_VOUCHER,
        "closed": Refusal.VOUCHER_CLOSED,
        "late": Refusal.AFTER_EXPIRY,
        "free": Refusal.NO_PRICE,
        "same": Refusal.DUPLICATE,
        "other": Refusal.WRONG_LESSEE,
    }
    assert [c.invocation_id for c, _ in out.paid] == ["same"]


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 60), st.sampled_from(["v", "w"])), max_size=40
    ),
    st.integers(0, 300),
    st.integers(0, 300),
    st.integers(0, 200_000),
)
def test_admission_never_pays_twice_or_beyond_the_hold(
    raw: list[tuple[str, int, str]], v_left: int, w_left: int, fee_ppm: int
) -> None:
    fees = FeePolicy(fee_ppm=fee_ppm)
    out = admit_batch(
        [claim(i, p, vid) for i, p, vid in raw],
        vouchers={"v": view(v_left), "w": view(w_left, "w")},
        settled=frozenset({"a"}),
        fees=fees,
        expiry_skew_s=0,
    )
    ids = [c.invocation_id for c, _ in out.paid]
    assert len(ids) == len(set(ids)) and "a" not in ids
    for vid, left in (("v", v_left), ("w", w_left)):
        assert sum(c.price_micro + fee for c, fee in out.paid if c.voucher_id == vid) <= left
    assert all(fee == fees.fee_micro(c.price_micro) for c, fee in out.paid)

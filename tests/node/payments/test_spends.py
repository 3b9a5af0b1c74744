"""`LocalSpends`, a one-process node's voucher spends: reserve is the one check-and-add, a settle charges
at most what was reserved, and long-expired vouchers are forgotten; `PaymentRequired` is a 402."""

from __future__ import annotations

from p2pfaas.node.payments.spends import FORGET_AFTER_S, LocalSpends, PaymentRequired, VoucherSpend

T0 = 1_700_000_000.0


def test_reserve_refuses_past_the_budget_and_says_what_is_left() -> None:
    spends = LocalSpends()
    assert spends.get("v") is None
    assert spends.reserve("v", budget_micro=100, expires_at=T0, cost_micro=60, worker=0, now=0.0) is None
    assert spends.reserve("v", budget_micro=100, expires_at=T0, cost_micro=41, worker=0, now=0.0) == 40
    assert spends.reserve("v", budget_micro=100, expires_at=T0, cost_micro=40, worker=0, now=0.0) is None
    spend = spends.get("v")
    assert spend == VoucherSpend(100, T0, committed_micro=100, charged_micro=0)
    assert spend.remaining_micro == 0


def test_settle_charges_what_ran_and_release_frees_the_rest() -> None:
    spends = LocalSpends()
    spends.reserve("v", budget_micro=1000, expires_at=T0, cost_micro=300, worker=0, now=0.0)
    spends.reserve("v", budget_micro=1000, expires_at=T0, cost_micro=200, worker=0, now=0.0)
    spends.settle("v", reserved_micro=300, charge_micro=120, worker=0, price_micro=110)
    spends.release("v", reserved_micro=200, worker=0)
    spends.settle("unknown", reserved_micro=5, charge_micro=5, worker=0)  # ignored
    assert spends.get("v") == VoucherSpend(1000, T0, committed_micro=120, charged_micro=120, priced_micro=110)
    assert spends.get("unknown") is None


def test_a_restored_charge_counts_against_the_budget() -> None:
    spends = LocalSpends()
    spends.restore("v", budget_micro=500, expires_at=T0, charged_micro=450, now=0.0, priced_micro=400)
    assert spends.reserve("v", budget_micro=500, expires_at=T0, cost_micro=51, worker=0, now=0.0) == 50
    spend = spends.get("v")
    assert spend is not None and (spend.charged_micro, spend.priced_micro) == (450, 400)


def test_left_counts_only_valid_vouchers_and_forget_drops_the_long_expired() -> None:
    spends = LocalSpends()
    spends.reserve("old", budget_micro=100, expires_at=T0, cost_micro=10, worker=0, now=0.0)
    spends.reserve(
        "new", budget_micro=100, expires_at=T0 + 10 * FORGET_AFTER_S, cost_micro=30, worker=0, now=0.0
    )
    assert spends.left_micro(now=T0 - 1) == 90 + 70
    assert spends.left_micro(now=T0 + 1) == 70  # "old" has expired
    assert spends.forget(now=T0 + FORGET_AFTER_S) == 0  # not long enough ago
    assert spends.forget(now=T0 + FORGET_AFTER_S + 1) == 1
    assert spends.get("old") is None and spends.get("new") is not None


def test_payment_required_is_a_402_with_its_reason() -> None:
    error = PaymentRequired("no voucher")
    assert error.status == 402 and "no voucher" in str(error)

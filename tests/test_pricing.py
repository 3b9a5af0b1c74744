"""A node's prices (`p2pfaas.pricing`): per CPU-second and per GB-second, in integer micro-credits,
rounded up once so that usage never rounds to free."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.errors import ConfigError
from p2pfaas.pricing import FREE, Prices


def test_a_charge_is_cpu_seconds_plus_gb_seconds_rounded_up() -> None:
    prices = Prices(per_cpu_s_micro=1000, per_gb_s_micro=512)
    # 1.5 CPU-s * 1000 + 0.5 GB * 2 s * 512 = 1500 + 512
    assert prices.charge_micro(cpu_ms=1500, peak_memory_mb=512, wall_ms=2000) == 2012
    assert prices.charge_micro(cpu_ms=1, peak_memory_mb=0, wall_ms=0) == 1  # a thousandth rounds up
    assert prices.charge_micro(cpu_ms=0, peak_memory_mb=0, wall_ms=10_000) == 0
    assert FREE.charge_micro(cpu_ms=10**6, peak_memory_mb=4096, wall_ms=10**6) == 0


def test_negative_prices_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must not be negative"):
        Prices(per_cpu_s_micro=-1)
    with pytest.raises(ConfigError):
        Prices(per_gb_s_micro=-1)


usage = st.integers(min_value=0, max_value=10**7)


@given(usage, usage, usage, st.integers(0, 10**4), st.integers(0, 10**4))
def test_the_charge_is_monotone_and_never_below_the_exact_price(
    cpu_ms: int, memory_mb: int, wall_ms: int, per_cpu: int, per_gb: int
) -> None:
    prices = Prices(per_cpu, per_gb)
    charge = prices.charge_micro(cpu_ms=cpu_ms, peak_memory_mb=memory_mb, wall_ms=wall_ms)
    exact_times_1024000 = cpu_ms * per_cpu * 1024 + memory_mb * wall_ms * per_gb
    assert charge * 1024 * 1000 >= exact_times_1024000 > (charge - 1) * 1024 * 1000
    assert prices.charge_micro(cpu_ms=cpu_ms + 1, peak_memory_mb=memory_mb, wall_ms=wall_ms) >= charge

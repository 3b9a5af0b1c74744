"""Advertised prices: a receipt above what the node advertised is a lie, rounding is not."""

from __future__ import annotations

from p2pfaas.trust.adverts import AdvertPrices, Usage, max_price_micro, overcharged


def test_a_receipt_above_the_advertised_prices_is_a_lie_and_rounding_is_not() -> None:
    prices = AdvertPrices(price_per_cpu_s=1000, price_per_gb_s=500)
    usage = Usage(cpu_ms=1500, wall_ms=2000, peak_memory_mb=100, reserved_memory_mb=128)
    honest = 1000 * 1.5 + 500 * (128 / 1024) * 2.0  # 1500 + 125
    assert max_price_micro(prices, usage) >= honest
    assert not overcharged(prices, usage, 1625)
    assert not overcharged(prices, usage, 1626)  # rounding slack
    assert overcharged(prices, usage, 2 * 1625)
    assert not overcharged(AdvertPrices(0, 0), Usage(0, 0, 0, 0), 1)  # slack only
    assert overcharged(AdvertPrices(0, 0), Usage(10_000, 10_000, 512, 512), 2)

"""The per-function arrival forecast alone, on virtual time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas.errors import LocalError
from p2pfaas.exec.forecast import ArrivalForecast


def feed(forecast: ArrivalForecast, digest: str, per_interval: list[int], *, run_s: float) -> float:
    """Spread each interval's arrivals evenly over it; returns the time just after the last interval."""
    for index, count in enumerate(per_interval):
        for k in range(count):
            now = (index + k / max(count, 1)) * forecast.interval_s
            forecast.observe_arrival(digest, now)
            forecast.observe_run(digest, run_s, now)
    return len(per_interval) * forecast.interval_s


def test_unknown_and_never_run_functions_want_nothing() -> None:
    forecast = ArrivalForecast(interval_s=60)
    assert forecast.wanted("f", 0) == 0
    forecast.observe_arrival("f", 1)
    assert forecast.wanted("f", 61) == 0  # no run time yet: Little's law has nothing to multiply


def test_a_rising_trend_asks_for_more_instances_than_the_last_interval_needed() -> None:
    forecast = ArrivalForecast(interval_s=60, alpha=0.5, beta=0.3, headroom=1.0)
    now = feed(forecast, "f", [10 * k for k in range(1, 11)], run_s=6.0)  # a linear ramp
    last_concurrency = 100 / 60 * 6.0  # what the last interval needed: 10 instances
    assert forecast.forecast_count("f", now) > 100  # Holt's trend carries it past the last count
    assert forecast.wanted("f", now) > last_concurrency


def test_a_steady_rate_converges_to_littles_law() -> None:
    forecast = ArrivalForecast(interval_s=60, headroom=1.0)
    now = feed(forecast, "f", [30] * 40, run_s=4.0)
    assert forecast.forecast_count("f", now) == pytest.approx(30, rel=0.01)
    assert forecast.wanted("f", now) == 2  # 0.5/s x 4 s


def test_quiet_intervals_decay_to_zero() -> None:
    forecast = ArrivalForecast(interval_s=60)
    now = feed(forecast, "f", [60] * 10, run_s=3.0)
    assert forecast.wanted("f", now) >= 3
    assert forecast.wanted("f", now + 30 * 60) == 0  # half an hour without a call
    forecast.forget("f")
    assert forecast.digests() == []


def test_functions_are_counted_apart_and_memory_is_bounded() -> None:
    forecast = ArrivalForecast(interval_s=60, max_functions=2)
    feed(forecast, "a", [60] * 5, run_s=2.0)
    feed(forecast, "b", [1] * 5, run_s=0.1)
    assert forecast.wanted("a", 300) > forecast.wanted("b", 300) == 0
    forecast.observe_arrival("c", 300)
    assert sorted(forecast.digests()) == ["b", "c"]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(LocalError):
        ArrivalForecast(interval_s=0)
    with pytest.raises(LocalError):
        ArrivalForecast(alpha=0)
    with pytest.raises(LocalError):
        ArrivalForecast(beta=2)
    with pytest.raises(LocalError):
        ArrivalForecast(headroom=0.5)


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=30))
def test_the_forecast_is_never_negative(per_interval: list[int]) -> None:
    forecast = ArrivalForecast(interval_s=10)
    now = feed(forecast, "f", per_interval, run_s=1.0)
    assert forecast.forecast_count("f", now) >= 0
    assert 0 <= forecast.wanted("f", now) <= max(per_interval) * 3 + 1

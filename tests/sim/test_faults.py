"""The simulated network's knobs (`p2pfaas.sim.faults`): latency models and the options' bounds."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from p2pfaas.sim.faults import LOCAL_LATENCY_S, ConstantLatency, FaultOptions, SyntheticLatency

HOSTS = [f"10.0.0.{n}" for n in range(1, 12)]


def test_constant_latency_is_one_delay_between_hosts_and_loopback_within_one() -> None:
    latency = ConstantLatency(0.02)
    assert latency("10.0.0.1", "10.0.0.2") == 0.02
    assert latency("10.0.0.1", "10.0.0.1") == LOCAL_LATENCY_S


def test_synthetic_latency_is_seeded_symmetric_bounded_and_metric() -> None:
    latency = SyntheticLatency(seed=7)
    again = SyntheticLatency(seed=7)
    for host in reversed(HOSTS):  # the order hosts are seen in moves nothing
        again.point(host)
    for a, b in itertools.combinations(HOSTS, 2):
        assert latency(a, b) == latency(b, a) == again(a, b)
        assert latency.min_s <= latency(a, b) <= latency.max_s
    assert latency(HOSTS[0], HOSTS[0]) == LOCAL_LATENCY_S
    assert latency(HOSTS[0], HOSTS[1]) != SyntheticLatency(seed=8)(HOSTS[0], HOSTS[1])
    for a, b, c in itertools.permutations(HOSTS[:6], 3):  # Vivaldi assumes the triangle inequality
        excess = latency.min_s  # each leg adds min_s once
        assert latency(a, c) <= latency(a, b) + latency(b, c) - excess + 1e-12


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"datagram_loss": 1.5}, "datagram_loss"),
        ({"datagram_loss": -0.1}, "datagram_loss"),
        ({"jitter_s": -1.0}, "jitter_s"),
        ({"connect_timeout_s": -1.0}, "connect_timeout_s"),
    ],
)
def test_options_out_of_range_are_refused(options: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        FaultOptions(**options)


def test_the_defaults_are_a_reliable_network_with_linuxs_connect_timeout() -> None:
    options = FaultOptions()
    assert (options.latency, options.jitter_s, options.datagram_loss) == (None, 0.0, 0.0)
    assert options.connect_timeout_s == 127.0 and options.blocked_links == frozenset()

"""The lab itself: home routers NAT, nothing comes in unasked, cuts drop and heal, removal is complete."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from p2pfaas.lab import Lab, LabError, LabSpec, netns, topology
from tests.lab.conftest import lab_or_skip
from tests.lab.labkit import seen_as, start_echo, stop

PORT = 9000


def test_a_home_host_reaches_the_internet_as_its_routers_address(small_lab: Lab) -> None:
    server = start_echo(small_lab.host("pub1"), PORT)
    try:
        assert seen_as(small_lab.host("home1-1"), "192.0.2.11", PORT) == "203.0.113.11"
        assert seen_as(small_lab.host("home2-2"), "192.0.2.11", PORT) == "203.0.113.12"
        assert seen_as(small_lab.host("pub2"), "192.0.2.11", PORT) == "192.0.2.12"  # public: as itself
    finally:
        stop(server)


def test_nothing_comes_into_a_home_unasked(small_lab: Lab) -> None:
    server = start_echo(small_lab.host("home1-1"), PORT)
    try:
        # No port forwarding: the router's address answers nothing, the LAN address is not routed.
        assert seen_as(small_lab.host("pub1"), "203.0.113.11", PORT).startswith("unreachable")
        assert seen_as(small_lab.host("pub1"), "198.51.100.11", PORT).startswith("unreachable")
        # ... but the host's own LAN neighbour reaches it directly.
        assert seen_as(small_lab.host("home1-2"), "198.51.100.11", PORT) == "198.51.100.12"
    finally:
        stop(server)


def test_a_cut_home_is_dark_until_healed(small_lab: Lab) -> None:
    server = start_echo(small_lab.host("pub1"), PORT)
    try:
        small_lab.cut("router2")
        try:
            assert seen_as(small_lab.host("home2-1"), "192.0.2.11", PORT, timeout_s=1).startswith(
                "unreachable"
            )
            assert (
                seen_as(small_lab.host("home1-1"), "192.0.2.11", PORT) == "203.0.113.11"
            )  # others unaffected
            small_lab.cut("router2")  # cutting twice is one cut
        finally:
            small_lab.heal("router2")
        assert seen_as(small_lab.host("home2-1"), "192.0.2.11", PORT) == "203.0.113.12"
    finally:
        stop(server)


def test_the_lab_adds_nothing_to_the_machines_own_network(lab_state_dir: Path) -> None:
    before = netns.run(["ip", "-o", "link"]), netns.run(["ip", "-o", "route"])
    lab = lab_or_skip(LabSpec(public=1, homes=1, per_home=1), lab_state_dir)
    try:
        assert (netns.run(["ip", "-o", "link"]), netns.run(["ip", "-o", "route"])) == before
        assert set(lab.namespaces) <= set(netns.namespaces())
    finally:
        lab.destroy()
    assert not set(lab.namespaces) & set(netns.namespaces())
    assert not lab.state_path.exists()


def test_a_lab_whose_owner_died_is_removed_as_stale(lab_state_dir: Path) -> None:
    lab_or_skip(LabSpec(public=0, homes=0), lab_state_dir).destroy()  # skips where no lab can run
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead = ended.pid
    lab = Lab.build(LabSpec(public=1, homes=0), owner_pid=dead, state_dir=lab_state_dir)
    try:
        assert lab.token in topology.remove_stale(state_dir=lab_state_dir)
        assert not set(lab.namespaces) & set(netns.namespaces())
    finally:
        lab.destroy()


def test_a_lab_records_itself_and_loads_back(small_lab: Lab) -> None:
    loaded = Lab.load(small_lab.token, state_dir=small_lab.state_dir)
    assert loaded.hosts == small_lab.hosts and loaded.namespaces == small_lab.namespaces
    assert loaded.host("home1-2").public_address == "203.0.113.11" and loaded.host("home1-2").behind_nat
    with pytest.raises(LabError, match="no host 'nope'"):
        loaded.host("nope")


def test_bad_specs_are_refused() -> None:
    with pytest.raises(LabError, match=r"0\.\.200"):
        LabSpec(public=-1)

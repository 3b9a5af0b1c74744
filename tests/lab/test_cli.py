"""`p2pfaas lab` as a user runs it: up, exec on a host, cut and heal, down, with clear errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from p2pfaas.lab import netns
from tests.conftest import require_or_skip


def p2pfaas(*args: str, state: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"P2PFAAS_LAB_STATE": str(state), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "p2pfaas", "lab", *args], capture_output=True, text=True, env=env, check=check,
        timeout=120,
    )  # fmt: skip


def test_lab_up_exec_cut_heal_down(tmp_path: Path) -> None:
    reason = netns.unavailable()
    if reason is not None:
        require_or_skip("P2PFAAS_REQUIRE_LAB", "the network lab", reason)
    up = p2pfaas("up", "--public", "1", "--homes", "1", "--per-home", "1", state=tmp_path)
    token = re.search(r"lab ([0-9a-f]+):", up.stdout)
    assert token is not None, up.stdout
    try:
        assert "home1-1" in up.stdout and "seen as 203.0.113.11" in up.stdout
        ran = p2pfaas("exec", "home1-1", "--", "ip", "-o", "-4", "addr", "show", "eth0", state=tmp_path)
        assert "198.51.100.11/24" in ran.stdout
        assert "cut off" in p2pfaas("cut", "router1", state=tmp_path).stdout
        assert "connected again" in p2pfaas("heal", "router1", state=tmp_path).stdout
        unknown = p2pfaas("exec", "nope", "--", "true", state=tmp_path, check=False)
        assert unknown.returncode == 1 and "no host 'nope'" in unknown.stderr
    finally:
        down = p2pfaas("down", "--token", token.group(1), state=tmp_path)
    assert f"lab {token.group(1)} removed" in down.stdout
    assert not [ns for ns in netns.namespaces() if token.group(1) in ns]
    none = p2pfaas("down", state=tmp_path, check=False)
    assert none.returncode == 1 and "labs: none" in none.stderr

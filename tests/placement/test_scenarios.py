"""`p2pfaas sim run SCENARIO` prints the placement tables (small networks here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfaas.cli import main


def test_sim_run_placement_prints_every_policy_beside_the_oracle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "placement.md"
    assert main(["sim", "run", "placement", "--nodes", "20", "--duration", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("JSQ oracle", "random", "nearest", "power-of-2", "threshold-probe", "ours (gossip)"):
        assert f"| {name} |" in printed
    assert "nan" not in printed
    assert out.read_text().strip() == printed.strip()


def test_sim_run_placement_faults_reports_nothing_lost(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sim", "run", "placement-faults", "--nodes", "20", "--duration", "6", "--policy", "ours"]
    assert main(args) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| ours"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == cells[2] and cells[3] == "0"  # accepted == completed, none lost


def test_an_unknown_policy_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "run", "placement", "--policy", "best"]) == 1
    assert "unknown placement policy 'best': use one of" in capsys.readouterr().err


def test_node_run_placement_options_reach_the_node_config() -> None:
    from p2pfaas.cli import build_parser
    from p2pfaas.node.drain import placement_options

    args = build_parser().parse_args(
        ["node", "run", "--placement", "power-of-2", "--gossip-period", "0.5", "--gossip-fanout", "3"]
    )
    assert placement_options(args) == {
        "placement": "power-of-2",
        "gossip_period_s": 0.5,
        "gossip_fanout": 3,
        "drain_deadline_s": 60.0,
    }

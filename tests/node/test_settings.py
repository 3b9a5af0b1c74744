"""Node resource settings: the TOML config file, command-line overrides, and refusing bad values."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from p2pfaas import cli
from p2pfaas.errors import ConfigError
from p2pfaas.node.settings import (
    NodeConfig,
    load_config_file,
    memory_mb,
    node_resources,
    service_options,
    share,
)


def test_memory_sizes() -> None:
    sizes = ("4g", "512m", "1.5G", "2048", "64MiB")
    assert [memory_mb(text) for text in sizes] == [4096, 512, 1536, 2048, 64]
    assert memory_mb(300) == 300
    with pytest.raises(ConfigError, match="4g, 512m"):
        memory_mb("lots")


def test_a_config_file_sets_resources_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('cpus = 1.5\nmemory = "4g"\nslots = 8\nqueue_size = 3\nprice_per_cpu_s_micro = 7\n')
    assert load_config_file(path) == {
        "cpus": 1.5,
        "memory_mb": 4096,
        "slots": 8,
        "queue_size": 3,
        "price_per_cpu_s_micro": 7,
    }
    fields = node_resources(path, cpus=None, memory_mb=1024, slots=None, queue_size=None)
    config = NodeConfig(anchor_url="http://a", key_path=tmp_path / "k", work_dir=tmp_path, **fields)
    assert (config.cpus, config.memory_mb, config.slots, config.queue_size) == (1.5, 1024, 8, 3)
    options = service_options(config, rng=random.Random(1))
    admission = options["admission"]
    assert admission.limits.slots == 8 and admission.limits.memory_mb == 1024
    assert options["cpus_per_instance"] == 1.0 and options["prices"].per_cpu_s_micro == 7


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("slotz = 3\n", "unknown setting 'slotz'"),
        ('slots = "8"\n', "slots must be int"),
        ("cpus = true\n", "cpus must be"),
        ("slots = [\n", "not valid TOML"),
    ],
)
def test_bad_config_files_are_refused_with_the_reason(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=complaint):
        load_config_file(path)


def test_unusable_values_are_refused_before_the_node_starts(tmp_path: Path) -> None:
    bad: dict[str, Any]
    for bad in (
        {"slots": 0},
        {"cpus": 0.0},
        {"memory_mb": 4},
        {"price_per_gb_s_micro": -1},
        {"workers": 0},
        {"workers": 5, "slots": 4},  # every worker process needs a slot of its own
    ):
        config = NodeConfig(anchor_url="http://a", key_path=tmp_path / "k", work_dir=tmp_path, **bad)
        with pytest.raises(ConfigError):
            service_options(config, rng=random.Random(1))


def test_node_run_reports_a_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text("slots = -\n")
    assert cli.main(["node", "run", "--config", str(path), "--work-dir", str(tmp_path)]) == 1
    assert "not valid TOML" in capsys.readouterr().err
    assert cli.main(["node", "run", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "cannot read config file" in capsys.readouterr().err
    path.write_text("workers = 0\n")
    assert cli.main(["node", "run", "--config", str(path), "--work-dir", str(tmp_path)]) == 1
    assert "workers must be between 1 and the slots" in capsys.readouterr().err


def test_what_is_lent_is_split_between_worker_processes_without_losing_any() -> None:
    for total in (1, 7, 8, 4096):
        for workers in (1, 2, 3):
            parts = [share(total, workers, i) for i in range(workers)]
            assert sum(parts) == total and max(parts) - min(parts) <= 1
    config = NodeConfig(
        anchor_url="http://a", key_path=Path("k"), work_dir=Path("w"), slots=5, memory_mb=3000, workers=2
    )
    limits = [service_options(config, rng=random.Random(1), worker=i)["admission"].limits for i in (0, 1)]
    assert [(lim.slots, lim.memory_mb) for lim in limits] == [(3, 1500), (2, 1500)]

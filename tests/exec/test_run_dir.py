"""An executor's run directory (`p2pfaas.exec.run_dir`): one subdirectory per instance with its
socket, paths short enough for a unix socket, and a sweep of what a previous run left."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfaas.errors import ConfigError
from p2pfaas.exec.run_dir import SOCKET_NAME, RunDir


def test_instances_live_in_subdirectories_holding_their_socket(short_dir: Path) -> None:
    run = RunDir(short_dir / "run")
    assert run.leftovers() == []  # not made yet
    run.create()
    assert (run.path.stat().st_mode & 0o777) == 0o700
    assert run.socket_path("0123456789") == run.path / "0123456789" / SOCKET_NAME
    with pytest.raises(AssertionError):
        run.instance_dir("../escape")


def test_sweep_removes_only_instance_directories_even_sealed_read_only(short_dir: Path) -> None:
    run = RunDir(short_dir / "run")
    run.create()
    sealed = run.instance_dir("abcdef0123")
    (sealed / "inner").mkdir(parents=True)
    (sealed / "inner" / "file").write_text("x")
    (sealed / "inner").chmod(0o500)
    sealed.chmod(0o500)
    run.instance_dir("0000000000").mkdir()
    (run.path / "not-an-instance").mkdir()
    (run.path / "keep.txt").write_text("mine")
    assert sorted(p.name for p in run.leftovers()) == ["0000000000", "abcdef0123"]
    run.sweep()
    assert sorted(p.name for p in run.path.iterdir()) == ["keep.txt", "not-an-instance"]
    run.instance_dir("1111111111").mkdir()
    run.remove("1111111111")
    assert not run.instance_dir("1111111111").exists()


def test_a_work_dir_too_long_for_socket_paths_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too long for unix socket paths"):
        RunDir(tmp_path / ("d" * 120))

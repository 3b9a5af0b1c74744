"""The command line, run as users run it: separate processes, real files and ports on 127.0.0.1."""

from __future__ import annotations

import stat
from pathlib import Path

from p2pfaas.identity import KeyPair
from tests.cli.clikit import p2pfaas
from tests.ports import free_port_block


def test_keys_new_writes_an_owner_only_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k" / "lessee.key"
    done = p2pfaas("keys", "new", "--out", str(key))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert KeyPair.load(key).key_id in done.stdout
    again = p2pfaas("keys", "new", "--out", str(key))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def test_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    done = p2pfaas("fn", "deploy", str(tmp_path), "--key", str(tmp_path / "missing.key"))
    assert done.returncode == 1
    assert done.stderr.startswith("p2pfaas: error: no key at")
    assert "Traceback" not in done.stderr


def test_devnet_up_demo_down_runs_separate_processes(tmp_path: Path) -> None:
    """`devnet up --detach`, `devnet demo`, `devnet down`: each node is its own process.

    With a Docker engine the nodes use it; without one they fall back to the labelled
    unsandboxed executor (this test then checks the loud warning).
    """
    directory = tmp_path / "devnet"
    port = free_port_block(4)
    up = p2pfaas("devnet", "up", "--nodes", "3", "--port", str(port), "--dir", str(directory), "--detach")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"anchor http://127.0.0.1:{port}, 3 node(s)" in up.stdout
        demo = p2pfaas("devnet", "demo", "--dir", str(directory))
        assert demo.returncode == 0, demo.stdout + demo.stderr
        ran_on = {line.split(" node ")[1].split()[0] for line in demo.stdout.splitlines() if " node " in line}
        assert len(ran_on) == 3  # every node ran the function
        assert "FunctionFailed: RuntimeError" in demo.stdout
        assert "the DHT advertises 3 node(s)" in demo.stdout, demo.stdout  # every node joined the overlay
        key, anchor = str(directory / "lessee.key"), f"http://127.0.0.1:{port}"
        listed = p2pfaas("fn", "list", "--key", key, "--anchor", anchor)
        assert listed.returncode == 0 and listed.stdout.split()[:2] == ["hello", "1.0.0"], listed
        versions = p2pfaas("fn", "versions", "hello", "--key", key, "--anchor", anchor)
        assert versions.returncode == 0 and versions.stdout.split()[:3] == ["*", "hello", "1.0.0"], versions
        missing = p2pfaas("fn", "versions", "nothing", "--key", key, "--anchor", anchor)
        assert missing.returncode == 1 and "no function named 'nothing'" in missing.stderr, missing
        failed = p2pfaas("fn", "invoke", "hello", '{"fail": true}', "--key", key, "--anchor", anchor)
        assert failed.returncode == 1 and "Traceback" in failed.stderr, failed  # the function's own
        assert failed.stderr.strip().splitlines()[-1].startswith("p2pfaas: error: "), failed.stderr
        back = p2pfaas("fn", "rollback", "hello", "1.0.0", "--key", key, "--anchor", anchor)
        assert back.returncode == 0 and "hello now runs" in back.stdout, back
        gone = p2pfaas("fn", "rm", "hello", "--key", key, "--anchor", anchor)
        assert gone.returncode == 0 and "hello removed" in gone.stdout, gone
        invoked = p2pfaas("fn", "invoke", "hello", "--key", key, "--anchor", anchor)
        assert invoked.returncode == 1 and "no function named 'hello'" in invoked.stderr, invoked
        if "UNSANDBOXED" in up.stdout:
            assert "NO SANDBOX" in (directory / "node-0.log").read_text()
    finally:
        down = p2pfaas("devnet", "down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    assert not (directory / "state.json").exists()


def test_devnet_without_docker_falls_back_loudly(tmp_path: Path) -> None:
    directory = tmp_path / "devnet"
    port = free_port_block(2)
    no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    up = p2pfaas(
        "devnet",
        "up",
        "--nodes",
        "1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--detach",
        env=no_engine,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "UNSANDBOXED" in up.stdout
        assert "NO SANDBOX" in (directory / "node-0.log").read_text()
        demo = p2pfaas("devnet", "demo", "--dir", str(directory), env=no_engine)
        assert demo.returncode == 0, demo.stdout + demo.stderr
    finally:
        p2pfaas("devnet", "down", "--dir", str(directory))

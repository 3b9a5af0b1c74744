"""`p2pfaas node run` and `node join` (p2pfaas/cli/node.py): a volunteer who is logged in joins with one
command, and the node serves; without Docker a node refuses to run functions unsandboxed.

A real anchor in this process; the node is the CLI in its own process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.client.account import AccountClient
from p2pfaas.identity import KeyPair
from p2pfaas.node.settings import load_config_file
from tests.cli.clikit import p2pfaas
from tests.functions import write_function


async def test_a_logged_in_volunteer_joins_in_one_command_and_the_node_serves(tmp_path: Path) -> None:
    settings = AnchorSettings(hasher=PasswordHasher(log2_n=10))
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0, settings=settings) as anchor,
        AccountClient(anchor.url) as volunteer,
        AsyncClient(anchor.url, KeyPair.generate()) as lessee,
    ):
        await volunteer.signup("vera", "a long enough password", role="volunteer")
        env = {**os.environ, "P2PFAAS_HOME": str(tmp_path / "home"), "P2PFAAS_TOKEN": volunteer.token or ""}
        work_dir = tmp_path / "home" / "node"
        command = [
            sys.executable, "-m", "p2pfaas", "node", "join", "--anchor", anchor.url, "--executor", "process",
            "--allow-unsandboxed", "--unpaid-owners", "--slots", "2", "--memory", "1g",
            "--peer", "127.0.0.1:9",
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            assert process.stdout is not None
            first = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            node_id = KeyPair.load(work_dir / "node.key").key_id
            assert f"node {node_id} claimed for your account" in first, first
            # The node is bound to the account, listed by the anchor, and serves a call.
            assert node_id in {k.key_id for k in (await volunteer.me()).keys if k.kind == "node"}
            listed = None
            for _ in range(200):  # bounded: 20 s
                listed = next((n for n in await lessee.nodes(refresh=True) if n.node_id == node_id), None)
                if listed is not None:
                    break
                await asyncio.sleep(0.1)
            assert listed is not None, "the joined node was never listed"
            await lessee.deploy(write_function(tmp_path, "echo"))
            outcome = await lessee.invoke("echo", {"hi": 1}, node_url=listed.url)
            assert outcome.value == {"echo": {"hi": 1}} and outcome.node_id == node_id
            # `node status` (#21 item 3) reports it from the node and the anchor.
            status = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "p2pfaas", "node", "status", "--anchor", anchor.url,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out = (await asyncio.wait_for(status.communicate(), 60))[0].decode()
            assert status.returncode == 0, out
            for expected in (f"node {node_id}", "listed by the anchor", "1 since it started", "0/2 busy"):
                assert expected in out, out
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 60)
        settings_file = load_config_file(work_dir / "node.toml")
        assert settings_file["slots"] == 2 and settings_file["memory_mb"] == 1024
        assert settings_file["unpaid_owners"] is True


def test_without_docker_a_node_refuses_to_run_unsandboxed_unless_allowed(tmp_path: Path) -> None:
    no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    done = p2pfaas("node", "run", "--work-dir", str(tmp_path / "n"), env=no_engine, timeout_s=60)
    assert done.returncode == 1
    assert "refusing to run functions unsandboxed" in done.stderr
    explicit = p2pfaas(
        "node", "run", "--executor", "docker", "--work-dir", str(tmp_path / "n"), env=no_engine
    )
    assert explicit.returncode == 1 and "no Docker engine answers" in explicit.stderr

"""`p2pfaas top` in a real terminal (tmux) against a real node, and `--once` for scripts."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import require_or_skip
from tests.functions import write_function
from tests.metrics.netkit import Net, metered_network

P2PFAAS = [sys.executable, "-m", "p2pfaas"]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with metered_network(tmp_path) as net:
        await net.client.deploy(write_function(tmp_path, "echo"))
        yield net


async def run(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "160"},
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_once_prints_one_frame_with_the_nodes_and_functions(net: Net) -> None:
    for i in range(3):
        await net.client.invoke("echo", {"i": i}, node_url=net.node.url)
    code, out = await run(*P2PFAAS, "top", "--once", "--interval", "0.3", "--anchor", net.anchor.url)
    assert code == 0, out
    assert net.node.url in out and "echo" in out and "0/4" in out and "1/1 nodes answering" in out
    code, out = await run(*P2PFAAS, "top", "--once", "--node", "http://127.0.0.1:9", "--interval", "0.2")
    assert code == 0 and "unreachable" in out and "0/1 nodes answering" in out


async def test_the_live_view_refreshes_in_a_terminal(net: Net) -> None:
    if shutil.which("tmux") is None:
        require_or_skip("P2PFAAS_REQUIRE_LAB", "tmux", "not installed (scripts/setup.sh installs it)")
    server = f"p2pfaas-top-{uuid.uuid4().hex[:8]}"  # a tmux server of our own, killed at the end
    tmux = ["tmux", "-L", server]
    command = " ".join([*P2PFAAS, "top", "--node", net.node.url, "--interval", "0.3"])
    try:
        code, out = await run(*tmux, "new-session", "-d", "-x", "160", "-y", "40", command)
        assert code == 0, out

        async def screen() -> str:
            _, text = await run(*tmux, "capture-pane", "-p")
            return text

        async def shows(*needles: str) -> str:
            text = ""
            for _ in range(100):  # bounded: 20 s
                text = await screen()
                if all(n in text for n in needles):
                    return text
                await asyncio.sleep(0.2)
            raise AssertionError(f"the terminal never showed {needles}:\n{text}")

        await shows("nodes", net.node.url, "functions")
        for i in range(5):
            await net.client.invoke("echo", {"i": i}, node_url=net.node.url)
        text = await shows("echo", "1/1 nodes answering")
        assert "unreachable" not in text
    finally:
        await run(*tmux, "kill-server")

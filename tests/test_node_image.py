"""#21 item 1b: the node's container image, built from this repository (Dockerfile, no registry),
joins a network and serves a call, with the host's Docker engine and a state directory shared at
the same path (tests fail rather than skip under P2PFAAS_REQUIRE_DOCKER=1)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.errors import P2PFaaSError
from p2pfaas.identity import KeyPair
from p2pfaas.node.settings import write_config_file
from tests.functions import write_function
from tests.ports import free_port

ROOT = Path(__file__).parents[1]
TAG = "p2pfaas/node:test"


async def test_the_node_image_joins_a_network_and_serves(runtime_image: str, docker_client: Any) -> None:
    built = await asyncio.to_thread(
        subprocess.run, ["bash", "scripts/build-node-image.sh", TAG],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    state = Path(tempfile.mkdtemp(prefix="p2pimg-", dir="/tmp"))  # the same path inside and out
    name = f"p2pfaas-node-test-{uuid.uuid4().hex[:8]}"
    container = None
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{state / 'anchor.db'}", port=0) as anchor,
            AsyncClient(anchor.url, KeyPair.generate()) as lessee,
        ):
            write_config_file(state / "node.toml", {"slots": 2, "memory_mb": 1024, "unpaid_owners": True})
            port = free_port()
            container = docker_client.containers.run(
                TAG,
                ["--anchor", anchor.url, "--work-dir", str(state / "node"),
                 "--config", str(state / "node.toml"), "--port", str(port), "--peer", "127.0.0.1:9",
                 "--image", runtime_image],
                name=name, detach=True, network_mode="host", cgroupns="host",
                volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                         str(state): {"bind": str(state), "mode": "rw"}},
            )  # fmt: skip
            listed = None
            for _ in range(300):  # bounded: 60 s for the node to start, announce and be checked
                listed = next((n for n in await lessee.nodes(refresh=True) if f":{port}" in n.url), None)
                if listed is not None:
                    break
                container.reload()
                assert container.status in ("created", "running"), container.logs()[-3000:]
                await asyncio.sleep(0.2)
            assert listed is not None, container.logs()[-3000:]
            await lessee.deploy(write_function(state, "echo"))
            try:
                cold = await lessee.invoke("echo", {"n": 1}, node_url=listed.url)
                warm = await lessee.invoke("echo", {"n": 2}, node_url=listed.url)
            except P2PFaaSError as error:
                log = container.logs()[-4000:].decode()
                raise AssertionError(f"{error}; the node's log:\n{log}") from None
            assert (cold.value, warm.value) == ({"echo": {"n": 1}}, {"echo": {"n": 2}})
            assert cold.cold and not warm.cold  # a real Docker instance, kept warm
    finally:
        if container is not None:
            await asyncio.to_thread(container.stop, timeout=30)  # SIGTERM: the node removes its own
            logs = container.logs()[-2000:]
            container.remove(force=True)
            assert b"Traceback" not in logs, logs
        left = docker_client.containers.list(all=True, filters={"label": "p2pfaas.owner"})
        shutil.rmtree(state, ignore_errors=True)
        with_state = [c.name for c in left if str(state) in str(c.attrs.get("HostConfig", {}).get("Binds"))]
        assert not with_state, f"function containers left behind: {with_state}"

"""Declared egress in a real container (`exec/egress.py`, `runtime/forwarder.py`, the Docker
executor): the container keeps no network interface but loopback; HTTP through `HTTPS_PROXY` reaches
the one declared host (a server of this test on the host's loopback, allowed by range as a lab host
would be) and nothing else; a function that declares nothing has no proxy at all."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from p2pfaas.errors import ExecutorError
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.egress import EgressProxy

pytestmark = pytest.mark.docker

FETCH = """
import json, os, socket, http.client, urllib.parse

def main(request):
    out = {"interfaces": sorted(name for _, name in socket.if_nameindex())}
    proxy = os.environ.get("HTTPS_PROXY", "")
    out["proxy"] = proxy
    for target in request["targets"]:
        host, port = target.rsplit(":", 1)
        try:
            if not proxy:
                socket.create_connection((host, int(port)), timeout=2).close()
                out[target] = "connected directly"
                continue
            parts = urllib.parse.urlsplit(proxy)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            conn.set_tunnel(host, int(port))
            conn.request("GET", "/hello")
            out[target] = conn.getresponse().read().decode()
        except OSError as exc:
            out[target] = f"{type(exc).__name__}: {exc}"
    return out
"""


def function(root: Path, egress: tuple[str, ...]) -> FunctionSpec:
    code = root / f"fn-{len(egress)}"
    code.mkdir(exist_ok=True)
    (code / "handler.py").write_text(FETCH)
    digest = hashlib.sha256(FETCH.encode() + repr(egress).encode()).hexdigest()
    return FunctionSpec(digest, code, "handler:main", memory_mb=64, timeout_s=20, egress=egress)


@pytest.fixture
async def destination() -> AsyncIterator[int]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from the declared host")

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_a_container_reaches_its_declared_host_through_the_proxy_only(
    runtime_image: str, short_dir: Path, destination: int
) -> None:
    executor = DockerExecutor(
        owner_id=f"test-{uuid.uuid4().hex[:12]}", work_dir=short_dir / "run", image=runtime_image
    )
    executor.egress = EgressProxy(allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    await executor.start()
    try:
        declared = f"127.0.0.1:{destination}"
        fn = function(short_dir, (declared,))
        payload = json.dumps({"targets": [declared, "127.0.0.1:1"]}).encode()
        result = await executor.invoke(fn, payload, timeout_s=20)
        assert result.ok, result.traceback
        seen = json.loads(result.output)
        assert seen["interfaces"] == ["lo"]  # still no network of its own
        assert seen[declared] == "hello from the declared host"
        assert "403" in seen["127.0.0.1:1"]  # not declared: the proxy refuses
        assert executor.egress.usage[fn.digest].received > 0
        # A function that declares nothing gets no proxy, and the container reaches nothing.
        plain = function(short_dir, ())
        seen = json.loads((await executor.invoke(plain, payload, timeout_s=20)).output)
        assert seen["proxy"] == "" and seen[declared].startswith(("OSError", "ConnectionRefusedError"))
    finally:
        await executor.aclose()


async def test_a_node_that_lends_no_network_refuses_a_function_that_declares_some(
    runtime_image: str, short_dir: Path
) -> None:
    executor = DockerExecutor(
        owner_id=f"test-{uuid.uuid4().hex[:12]}", work_dir=short_dir / "run", image=runtime_image
    )
    await executor.start()
    try:
        with pytest.raises(ExecutorError, match="lends none"):
            await executor.invoke(function(short_dir, ("api.example.org:443",)), b"{}", timeout_s=20)
        await asyncio.sleep(0)
    finally:
        await executor.aclose()

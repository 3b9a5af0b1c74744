"""The first network end to end on real loopback sockets: anchor, node and client in one process.

Every test runs twice: with the Docker executor (real hardened containers; skipped with a reason
where no engine is reachable, failing under P2PFAAS_REQUIRE_DOCKER=1) and with the unsandboxed
process executor (so the flow is covered everywhere).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import stat
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from p2pfaas import codec, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.bundle.lock import read_lock
from p2pfaas.client import AsyncClient, Callables
from p2pfaas.errors import (
    FunctionFailed,
    InvokeTimeout,
    MemoryExceeded,
    NotFound,
    UnencodableResult,
    Unreachable,
)
from p2pfaas.exec.base import Executor
from p2pfaas.exec.container_config import LABEL_OWNER
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import ErrorReply, InvokeRequest, InvokeResult, NodeStatus
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from tests.functions import write_function


@dataclasses.dataclass
class Net:
    anchor: AnchorServer
    node: NodeDaemon
    client: AsyncClient
    root: Path


@pytest.fixture
async def net(tmp_path: Path, executor_kind: str) -> AsyncIterator[Net]:
    # Unix socket paths are limited to 107 bytes: keep the executor's run directory short.
    run_dir = Path(tempfile.mkdtemp(prefix="p2pn-", dir="/tmp"))
    async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}", port=0) as anchor:
        config = NodeConfig(
            unpaid_owners=True,  # among friends: owners run their own functions unpaid
            anchor_url=anchor.url,
            key_path=tmp_path / "node" / "node.key",
            work_dir=tmp_path / "node",
            port=0,
            executor=executor_kind,
            allow_unsandboxed=True,
        )
        executor: Executor
        if executor_kind == "docker":
            owner = KeyPair.load_or_create(config.key_path).key_id
            executor = DockerExecutor(owner_id=owner, work_dir=run_dir)
        else:
            executor = UnsandboxedProcessExecutor(work_dir=run_dir)
        async with (
            NodeDaemon(config, executor=executor) as node,
            AsyncClient(anchor.url, KeyPair.generate()) as client,
        ):
            await node.announce()
            yield Net(anchor, node, client, tmp_path)
    shutil.rmtree(run_dir, ignore_errors=True)


async def test_deploy_and_invoke_returns_the_value_signed_by_the_node(net: Net) -> None:
    await net.client.deploy(write_function(net.root, "echo"))
    first = await net.client.invoke("echo", {"x": 1})
    second = await net.client.invoke("echo", [1, "two"])
    assert first.value == {"echo": {"x": 1}}
    assert second.value == {"echo": [1, "two"]}
    assert first.node_id == second.node_id == net.node.node_id
    assert first.cold and not second.cold


async def test_a_function_that_raises_returns_its_type_and_traceback(net: Net) -> None:
    await net.client.deploy(write_function(net.root, "boom"))
    with pytest.raises(FunctionFailed) as caught:
        await net.client.invoke("boom", 7)
    assert caught.value.error_type == "ValueError"
    assert "bad input 7" in str(caught.value)
    assert "in helper" in caught.value.traceback
    await net.client.deploy(write_function(net.root, "echo"))
    assert (await net.client.invoke("echo", 1)).value == {"echo": 1}


async def test_a_python_closure_runs_in_the_sandbox_and_its_result_comes_back_unpickled(net: Net) -> None:
    """Issue #16 item 2: a closure packed by value (with cloudpickle and msgpack's pure-Python code
    in its bundle) runs in the runtime's container; its result travels as MessagePack."""
    base = 3

    def powers(n: int, *, label: str) -> dict[str, Any]:
        import sys

        return {"label": label, "powers": tuple(base**i for i in range(n)), "py": tuple(sys.version_info[:2])}

    runner = Callables(net.client, timeout_s=5.0)
    assert await runner.run(powers, 4, label="x") == {"label": "x", "powers": (1, 3, 9, 27), "py": (3, 11)}
    with pytest.raises(UnencodableResult, match="cannot travel back"):
        await runner.run(lambda: object())


def numpy_function(root: Path, name: str) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "p2pfaas.toml").write_text(
        f'name = "{name}"\nversion = "1"\nhandler = "main:handle"\nmemory_mb = 256\ntimeout_s = 20\n'
        'requirements = ["numpy>=1.26"]\n'
    )
    (directory / "main.py").write_text(
        "import numpy as np\n"
        "def handle(event):\n"
        "    a = np.arange(event['n'], dtype=np.int64)\n"
        "    return {'sum': int(a.sum()), 'dot': float(np.dot(a, a)), 'file': np.__file__}\n"
    )
    return directory


async def test_numpy_runs_from_a_dependency_layer_fetched_once_and_mounted_read_only(
    net: Net, executor_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #16 item 1: requirements resolved at pack time into locked wheels, uploaded to the
    anchor, fetched and verified by the node, unpacked once, mounted read-only (no network in the
    container); two functions with the same lock share one layer."""
    monkeypatch.setenv("P2PFAAS_WHEEL_CACHE", str(net.root / "wheels"))
    await net.client.deploy(numpy_function(net.root, "np-a"))
    await net.client.deploy(numpy_function(net.root, "np-b"))
    first = await net.client.invoke("np-a", {"n": 10})
    assert first.value["sum"] == 45 and first.value["dot"] == 285.0
    if executor_kind == "docker":
        assert first.value["file"].startswith("/deps/numpy/")
    assert (await net.client.invoke("np-b", {"n": 4})).value["sum"] == 6
    # numpy's BLAS runs single-threaded (INSTANCE_ENV): no thread pool outlives a call, so the
    # instance stays warm rather than being replaced after every call.
    again = await net.client.invoke("np-a", {"n": 3})
    assert again.value["sum"] == 3 and not again.cold
    layers = net.node.service.layers
    assert layers is not None
    [layer] = [p for p in layers.root.iterdir() if not p.name.startswith(".")]
    lock = read_lock(net.root / "np-a")
    assert lock is not None and layer.name == lock.layer_digest
    assert layers.fetched_bytes == lock.size  # once for both functions
    assert stat.S_IMODE((layer / "site" / "numpy").stat().st_mode) == 0o555  # and mounted read-only


async def test_a_closure_that_needs_numpy_returns_an_array_without_pickle(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook user's function with requirements: its layer is resolved when it is packed, and
    the array it returns travels as MessagePack, never as a pickle."""
    monkeypatch.setenv("P2PFAAS_WHEEL_CACHE", str(net.root / "wheels"))
    scale = 2.5

    def scaled(n: int) -> Any:
        import numpy

        return numpy.arange(n, dtype=numpy.float64).reshape(2, -1) * scale

    runner = Callables(net.client, timeout_s=20.0, memory_mb=256, requirements=["numpy>=1.26"])
    array = await runner.run(scaled, 6)
    assert isinstance(array, np.ndarray) and array.shape == (2, 3)
    assert array.tolist() == [[0.0, 2.5, 5.0], [7.5, 10.0, 12.5]]


async def test_a_timeout_kills_the_instance_and_the_node_serves_on(net: Net) -> None:
    await net.client.deploy(write_function(net.root, "sleepy", timeout_s=0.5))
    with pytest.raises(InvokeTimeout):
        await net.client.invoke("sleepy", {"s": 30})
    assert (await net.client.invoke("sleepy", {"s": 0})).value == "woke"


async def test_a_memory_hog_is_killed_and_the_node_serves_on(net: Net) -> None:
    await net.client.deploy(write_function(net.root, "hog", memory_mb=64))
    with pytest.raises(MemoryExceeded):
        await net.client.invoke("hog", {})
    await net.client.deploy(write_function(net.root, "echo"))
    assert (await net.client.invoke("echo", 2)).value == {"echo": 2}


async def test_the_node_keeps_serving_when_the_anchor_is_gone(net: Net) -> None:
    await net.client.deploy(write_function(net.root, "echo"))
    node_url = net.node.url
    assert (await net.client.invoke("echo", 1, node_url=node_url)).value == {"echo": 1}
    request = await _signed_request(net)
    await net.anchor.__aexit__(None, None, None)
    status, answer = await _post(f"{node_url}/v1/invoke", codec.encode(request))
    assert status == 200 and codec.decode_as(InvokeResult, answer).ok


@pytest.mark.parametrize("executor_kind", ["process"], indirect=True)
async def test_status_is_json_when_asked_for(net: Net) -> None:
    """Issue #16: `GET /v1/status` answered only MessagePack, unreadable from a browser or curl."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{net.node.url}/v1/status", headers={"Accept": "application/json"}) as answer:
            assert answer.content_type == "application/json"
            status = await answer.json()
        async with session.get(f"{net.node.url}/v1/status") as packed:
            assert codec.decode_as(NodeStatus, await packed.read()).node_id == status["node_id"]
    assert status["node_id"] == net.node.node_id and status["in_flight"] == 0


async def test_unknown_function_name_is_not_found(net: Net) -> None:
    with pytest.raises(NotFound):
        await net.client.invoke("nope", {})


# --- the node's answers to bad requests, on the raw HTTP API ---------------------------------------


async def _post(url: str, body: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
        return response.status, await response.read()


async def _signed_request(net: Net, keys: KeyPair | None = None, digest: str | None = None) -> InvokeRequest:
    info = await net.client.deploy(write_function(net.root, "echo"))
    return signing.sign(
        InvokeRequest(
            invocation_id="test-1",
            digest=digest or info.header.digest,
            payload=b"{}",
            timeout_s=5.0,
            voucher=None,
            signer=b"",
            signature=b"",
        ),
        keys or net.client.keys,
    )


@pytest.mark.parametrize("body", [b"", b"\xc1garbage", codec.encode(ErrorReply("x", "y"))])
async def test_malformed_requests_get_400_with_a_reason(net: Net, body: bytes) -> None:
    status, answer = await _post(f"{net.node.url}/v1/invoke", body)
    assert status == 400
    reply = codec.decode_as(ErrorReply, answer)
    assert reply.code == "malformed" and reply.reason


async def test_a_bad_signature_gets_403(net: Net) -> None:
    request = await _signed_request(net)
    forged = dataclasses.replace(request, payload=b'{"tampered": true}')
    status, answer = await _post(f"{net.node.url}/v1/invoke", codec.encode(forged))
    assert status == 403
    assert codec.decode_as(ErrorReply, answer).code == "bad-signature"


async def test_someone_elses_function_gets_403(net: Net) -> None:
    request = await _signed_request(net, keys=KeyPair.generate())
    status, answer = await _post(f"{net.node.url}/v1/invoke", codec.encode(request))
    assert status == 403
    assert "owner" in codec.decode_as(ErrorReply, answer).reason


async def test_an_unknown_digest_gets_404(net: Net) -> None:
    request = await _signed_request(net, digest="ab" * 32)
    status, answer = await _post(f"{net.node.url}/v1/invoke", codec.encode(request))
    assert status == 404
    assert codec.decode_as(ErrorReply, answer).code == "not-found"


async def test_a_good_request_gets_a_result_signed_by_the_node(net: Net) -> None:
    request = await _signed_request(net)
    status, answer = await _post(f"{net.node.url}/v1/invoke", codec.encode(request))
    assert status == 200
    result = codec.decode_as(InvokeResult, answer)
    assert signing.verify(result).key_id == net.node.node_id
    assert result.ok and result.invocation_id == "test-1"


# --- recovery: a node process killed outright, then restarted ------------------------------------


async def _start_node_process(
    client: AsyncClient, anchor_url: str, work_dir: Path
) -> tuple[asyncio.subprocess.Process, str]:
    """`p2pfaas node run` as its own process; returns it and its URL once the anchor lists it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "p2pfaas", "node", "run", "--executor", "docker", "--unpaid-owners", "--anchor", anchor_url),
        *("--work-dir", str(work_dir), "--peer", "127.0.0.1:9"),  # a DHT peer that is not there
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(120):
        while line := (await process.stdout.readline()).decode():
            if " serving on " in line:
                url = line.split(" serving on ")[1].split()[0]
                for _ in range(1000):  # it announces itself just after it starts serving
                    if url in [node.url for node in await client.nodes(refresh=True)]:
                        return process, url
                    await asyncio.sleep(0.05)
    raise AssertionError(f"the node exited with status {await process.wait()} before serving")


async def test_a_node_killed_outright_removes_its_orphans_on_restart_and_serves(
    tmp_path: Path, docker_client: Any, runtime_image: str
) -> None:
    work_dir = Path(tempfile.mkdtemp(prefix="p2pk-", dir="/tmp"))  # unix socket paths are short
    owner = KeyPair.load_or_create(work_dir / "node.key").key_id
    owned = {"label": f"{LABEL_OWNER}={owner}"}
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}", port=0) as anchor,
        AsyncClient(anchor.url, KeyPair.generate()) as client,
    ):
        await client.deploy(write_function(tmp_path, "echo"))
        node, url = await _start_node_process(client, anchor.url, work_dir)
        try:
            assert (await client.invoke("echo", 1, node_url=url)).cold
            [orphan] = docker_client.containers.list(all=True, filters=owned)
            node.kill()  # SIGKILL: no cleanup at all
            await node.wait()
            orphan.reload()
            assert orphan.status == "running"  # left behind by the crash

            node, url = await _start_node_process(client, anchor.url, work_dir)
            ids = [c.id for c in docker_client.containers.list(all=True, filters=owned)]
            assert orphan.id not in ids  # removed on start, before serving
            again = await client.invoke("echo", 2, node_url=url)
            assert again.value == {"echo": 2} and again.cold
        finally:
            if node.returncode is None:
                node.terminate()
                await node.wait()
    assert docker_client.containers.list(all=True, filters=owned) == []  # a clean stop removes all
    shutil.rmtree(work_dir, ignore_errors=True)


async def test_a_function_that_declares_egress_is_not_run_where_no_network_is_lent(net: Net) -> None:
    """Issue #16 item 6: such a function runs only on nodes run with --egress; elsewhere the node
    answers busy (503, so callers move on) before anything starts."""
    directory = net.root / "fetcher"
    directory.mkdir()
    (directory / "p2pfaas.toml").write_text(
        'name = "fetcher"\nversion = "1"\nhandler = "main:handle"\negress = ["api.example.org:443"]\n'
    )
    (directory / "main.py").write_text("def handle(event):\n    return 'never'\n")
    await net.client.deploy(directory)
    with pytest.raises(Unreachable, match=r"busy: fetcher reaches the network .*this node lends none"):
        await net.client.invoke("fetcher", {}, node_url=net.node.url)  # and tried elsewhere: none

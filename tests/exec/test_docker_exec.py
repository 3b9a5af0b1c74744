"""The Docker executor against the real engine: results, errors, limits and the sandbox itself."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import p2pfaas
from p2pfaas.errors import ConfigError, ExecutorError, InvokeTimeout, MemoryExceeded
from p2pfaas.exec.base import Executor, FunctionSpec
from p2pfaas.exec.container_config import LABEL_DIGEST, LABEL_OWNER
from p2pfaas.exec.docker_exec import DockerExecutor

from .conftest import make_function

pytestmark = pytest.mark.docker


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def _owned(client: Any, owner_id: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_OWNER}={owner_id}"}))


@pytest.fixture
def owner_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"  # unique: other test runs may share the engine


@pytest.fixture
async def executor(runtime_image: str, owner_id: str, short_dir: Path) -> AsyncIterator[DockerExecutor]:
    executor = DockerExecutor(owner_id=owner_id, work_dir=short_dir / "run", image=runtime_image)
    await executor.start()
    yield executor
    await executor.aclose()


async def test_is_a_sandboxed_executor(executor: DockerExecutor) -> None:
    as_protocol: Executor = executor
    assert as_protocol.sandboxed is True and as_protocol.kind == "docker"


def test_rejects_bad_config(short_dir: Path) -> None:
    with pytest.raises(ConfigError):
        DockerExecutor(owner_id="no spaces allowed", work_dir=short_dir)
    with pytest.raises(ConfigError, match="too long"):
        DockerExecutor(owner_id="ok", work_dir=short_dir / ("x" * 100))


async def test_runs_warm_in_a_labelled_hardened_container(
    executor: DockerExecutor, function: FunctionSpec, docker_client: Any, owner_id: str
) -> None:
    first = await executor.invoke(function, _body({"a": [1, 2]}), timeout_s=30)
    assert first.ok and first.cold and json.loads(first.output) == {"a": [1, 2]}
    second = await executor.invoke(function, _body({"op": "calls"}), timeout_s=30)
    assert (second.ok, second.cold, second.output) == (True, False, b"2")
    [container] = _owned(docker_client, owner_id)
    [instance_id] = executor.instance_ids(function.digest)
    assert container.id == executor.container_id(instance_id)
    assert container.labels[LABEL_DIGEST] == function.digest
    host = container.attrs["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == host["MemorySwap"] == function.memory_mb * 2**20
    assert host["PidsLimit"] > 0 and host["NanoCpus"] == 10**9
    assert container.attrs["Config"]["User"] == "65534:65534"


async def test_function_error_returns_type_and_traceback(
    executor: DockerExecutor, function: FunctionSpec
) -> None:
    result = await executor.invoke(function, _body({"op": "raise", "x": "y"}), timeout_s=30)
    assert (result.ok, result.error_type, result.error_message) == (False, "ValueError", "bad input: y")
    assert '/fn/handler.py", line' in result.traceback and "raise ValueError" in result.traceback
    assert (await executor.invoke(function, _body(1), timeout_s=30)).cold is False


async def test_what_a_call_prints_is_its_own_output_and_capped(
    executor: DockerExecutor, function: FunctionSpec
) -> None:
    printed = await executor.invoke(
        function, _body({"op": "print", "text": "hello", "times": 2}), timeout_s=30
    )
    assert printed.ok and printed.logs == "hello\nhello\nto stderr\n"
    # 100 MB printed: the call keeps 64 KiB of it, and a line on the rest; the node's memory never sees it.
    flood = {"op": "print", "text": "y" * 999, "times": 100_000}
    flooded = await executor.invoke(function, _body(flood), timeout_s=120)
    assert flooded.ok and len(flooded.logs) <= 64 * 1024 + 256 and "more bytes dropped" in flooded.logs
    assert (await executor.invoke(function, _body(1), timeout_s=30)).logs == ""


async def test_timeout_kills_and_replaces(
    executor: DockerExecutor, function: FunctionSpec, docker_client: Any, owner_id: str
) -> None:
    await executor.invoke(function, _body(1), timeout_s=30)
    [old] = _owned(docker_client, owner_id)
    with pytest.raises(InvokeTimeout):
        await executor.invoke(function, _body({"op": "sleep", "s": 60}), timeout_s=0.5)
    assert _owned(docker_client, owner_id) == []  # killed and removed, not left running
    after = await executor.invoke(function, _body(2), timeout_s=30)
    assert after.ok and after.cold
    assert [c.id for c in _owned(docker_client, owner_id)] != [old.id]


async def test_memory_bomb_is_memory_exceeded(executor: DockerExecutor, tmp_path: Path) -> None:
    function = make_function(tmp_path / "small", memory_mb=64)
    with pytest.raises(MemoryExceeded):
        await executor.invoke(function, _body({"op": "alloc", "mb": 1024}), timeout_s=60)
    result = await executor.invoke(function, _body({"op": "alloc", "mb": 8}), timeout_s=60)
    assert result.ok and result.cold and result.output == b"8"


async def test_container_dying_is_executor_error(executor: DockerExecutor, function: FunctionSpec) -> None:
    with pytest.raises(ExecutorError, match="exit status 5"):
        await executor.invoke(function, _body({"op": "die"}), timeout_s=30)
    assert (await executor.invoke(function, _body(1), timeout_s=30)).ok


async def test_a_container_killed_mid_invocation_is_a_clear_error_and_is_replaced(
    executor: DockerExecutor, function: FunctionSpec, docker_client: Any, owner_id: str
) -> None:
    assert (await executor.invoke(function, _body(1), timeout_s=30)).ok
    [instance_id] = executor.instance_ids(function.digest)
    doomed = executor.container_id(instance_id)
    running = asyncio.create_task(executor.invoke(function, _body({"op": "sleep", "s": 20}), timeout_s=30))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(docker_client.containers.get(doomed).kill)  # as an operator or a crash would
    with pytest.raises(ExecutorError, match=r"killed \(SIGKILL, not by its 128 MB memory limit\)"):
        await running
    fresh = await executor.invoke(function, _body({"op": "calls"}), timeout_s=30)
    assert fresh.ok and fresh.cold and fresh.output == b"1"
    [container] = _owned(docker_client, owner_id)
    assert container.id != doomed and container.status == "running"


async def test_has_no_network(executor: DockerExecutor, function: FunctionSpec, docker_client: Any) -> None:
    interfaces = await executor.invoke(function, _body({"op": "interfaces"}), timeout_s=30)
    assert json.loads(interfaces.output) == ["lo"]
    # A server the host can reach on every address; the container must reach it on none.
    with socket.create_server(("0.0.0.0", 0)) as server:
        port = server.getsockname()[1]
        gateway = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0].get("Gateway")
        for host in ["127.0.0.1", "1.1.1.1", *([gateway] if gateway else [])]:
            result = await executor.invoke(
                function, _body({"op": "connect", "host": host, "port": port}), timeout_s=30
            )
            assert result.ok and isinstance(json.loads(result.output), dict), (host, result)


async def test_root_is_read_only_and_tmp_writable(executor: DockerExecutor, function: FunctionSpec) -> None:
    for path, expected in [
        ("/etc/evil", {"error": "OSError", "errno": errno.EROFS}),
        ("/fn/evil.py", {"error": "OSError", "errno": errno.EROFS}),
        ("/tmp/scratch", "written"),
    ]:
        result = await executor.invoke(function, _body({"op": "write", "path": path}), timeout_s=30)
        assert json.loads(result.output) == expected, path
    assert not (function.code_dir / "evil.py").exists()


async def test_runs_as_nobody(executor: DockerExecutor, function: FunctionSpec) -> None:
    result = await executor.invoke(function, _body({"op": "ids"}), timeout_s=30)
    assert json.loads(result.output) == [65534, 65534, 65534]


async def test_concurrent_invocations_grow_the_pool_to_its_cap(
    runtime_image: str, owner_id: str, short_dir: Path, function: FunctionSpec, docker_client: Any
) -> None:
    executor = DockerExecutor(
        owner_id=owner_id, work_dir=short_dir / "run", image=runtime_image, max_per_function=2
    )
    await executor.start()
    try:
        results = await asyncio.gather(
            *(executor.invoke(function, _body({"op": "sleep", "s": 0.3}), timeout_s=60) for _ in range(4))
        )
        assert all(result.ok for result in results) and sum(result.cold for result in results) == 2
        assert len(_owned(docker_client, owner_id)) == 2
    finally:
        await executor.aclose()


async def test_start_removes_orphans_and_aclose_removes_all(
    runtime_image: str,
    owner_id: str,
    short_dir: Path,
    function: FunctionSpec,
    docker_client: Any,
    tmp_path: Path,
) -> None:
    # Left by a "previous run" of this owner, and one of another owner that must survive.
    orphan = docker_client.containers.create(
        runtime_image, entrypoint=["sleep", "600"], labels={LABEL_OWNER: owner_id}, network_mode="none"
    )
    orphan.start()
    bystander = docker_client.containers.create(
        runtime_image,
        entrypoint=["sleep", "600"],
        labels={LABEL_OWNER: owner_id + "-other"},
        network_mode="none",
    )
    try:
        executor = DockerExecutor(owner_id=owner_id, work_dir=short_dir / "run", image=runtime_image)
        await executor.start()
        assert _owned(docker_client, owner_id) == []
        other = make_function(tmp_path / "other")
        await asyncio.gather(
            executor.invoke(function, _body(1), timeout_s=30), executor.invoke(other, _body(2), timeout_s=30)
        )
        assert len(_owned(docker_client, owner_id)) == 2
        await executor.aclose()
        assert _owned(docker_client, owner_id) == []
        assert list((short_dir / "run").iterdir()) == []
        bystander.reload()  # still there
    finally:
        bystander.remove(force=True)


async def test_missing_image_is_a_clear_error(owner_id: str, short_dir: Path, docker_client: Any) -> None:
    executor = DockerExecutor(owner_id=owner_id, work_dir=short_dir, image="p2pfaas/no-such-image:0")
    with pytest.raises(ExecutorError, match="runtime build"):
        await executor.start()
    await executor.aclose()


# A node in miniature, in its own process: an executor with one warm instance, held idle past the
# shim's grace period (it must survive that), then, with `busy`, one call in flight; then it waits
# to be killed.
_PROJECT_ROOT = str(Path(p2pfaas.__file__).resolve().parents[1])
_NODE = """
import asyncio, json, sys
from pathlib import Path
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.docker_exec import DockerExecutor

async def main(owner, work_dir, image, code_dir, digest, grace_s, busy):
    executor = DockerExecutor(owner_id=owner, work_dir=Path(work_dir), image=image, orphan_grace_s=grace_s)
    await executor.start()
    fn = FunctionSpec(digest=digest, code_dir=Path(code_dir), handler="handler:main", memory_mb=64,
                      timeout_s=600.0)
    first = await executor.invoke(fn, b"1", timeout_s=30)
    await asyncio.sleep(3 * grace_s)  # idle but held: the shim must not stop
    second = await executor.invoke(fn, b"2", timeout_s=30)
    [instance_id] = executor.instance_ids(digest)
    if busy == "busy":
        asyncio.create_task(executor.invoke(fn, b'{"op": "sleep", "s": 600}', timeout_s=600))
        await asyncio.sleep(0.5)
    print(json.dumps({"container": executor.container_id(instance_id), "cold": [first.cold, second.cold]}),
          flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:6], float(sys.argv[6]), sys.argv[7]))
"""


@pytest.mark.parametrize("state", ["idle", "busy"])
async def test_containers_stop_on_their_own_when_their_node_is_killed(
    runtime_image: str, owner_id: str, short_dir: Path, function: FunctionSpec, docker_client: Any, state: str
) -> None:
    grace_s = 1.0
    argv = [owner_id, str(short_dir / "run"), runtime_image, str(function.code_dir), function.digest]
    env = {**os.environ, "PYTHONPATH": _PROJECT_ROOT}
    node = subprocess.Popen(  # noqa: ASYNC220 - returns at once; read and waited in threads below
        [sys.executable, "-c", _NODE, *argv, str(grace_s), state], stdout=subprocess.PIPE, env=env
    )
    try:
        assert node.stdout is not None
        line = await asyncio.to_thread(node.stdout.readline)
        assert line, f"the node process exited with status {await asyncio.to_thread(node.wait)}"
        started = json.loads(line)
        assert started["cold"] == [True, False]  # the idle instance it held outlived the grace period
        container = docker_client.containers.get(started["container"])
        assert container.status == "running"
        node.send_signal(signal.SIGKILL)  # our own child, by its pid
        await asyncio.to_thread(node.wait)
        for _ in range(240):  # a bounded poll: 60 s, for a grace period of 1 s
            container.reload()
            if container.status == "exited":
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError(f"the container of the killed node still runs: {container.status}")
        assert container.attrs["State"]["ExitCode"] == 0  # the shim's own exit, not a kill
    finally:
        if node.poll() is None:
            node.kill()
        await asyncio.to_thread(node.wait)
        if node.stdout is not None:
            node.stdout.close()
        for leftover in _owned(docker_client, owner_id):  # as the node's next start would
            leftover.remove(force=True)

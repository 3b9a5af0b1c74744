"""The executor a node's config asks for (`p2pfaas.node.executors`): Docker when an engine answers,
the process executor only when the volunteer allowed it, never a silent downgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p2pfaas.errors import ConfigError
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.node.executors import docker_problem, make_executor
from p2pfaas.node.settings import NodeConfig, check
from p2pfaas.node.workers.paths import worker_owner_id

NODE_ID = "ab" * 20


def config(work_dir: Path, **options: Any) -> NodeConfig:
    return NodeConfig(
        anchor_url="http://127.0.0.1:9", key_path=work_dir / "key", work_dir=work_dir, **options
    )


def test_an_unknown_executor_or_an_unallowed_process_executor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown executor 'vm'"):
        make_executor(config(tmp_path, executor="vm"), owner_id=NODE_ID)
    with pytest.raises(ConfigError, match="refusing to run functions unsandboxed"):
        make_executor(config(tmp_path, executor="process"), owner_id=NODE_ID)


async def test_an_allowed_process_executor_runs_in_the_workers_own_directory(tmp_path: Path) -> None:
    settings = config(tmp_path, executor="process", allow_unsandboxed=True, workers=2)
    for worker, run_dir in ((0, tmp_path / "run"), (1, tmp_path / "worker-1" / "run")):
        executor = make_executor(settings, owner_id=NODE_ID, worker=worker)
        assert isinstance(executor, UnsandboxedProcessExecutor) and not executor.sandboxed
        await executor.start()
        try:
            assert run_dir.is_dir()
        finally:
            await executor.aclose()


@pytest.mark.docker
def test_with_an_engine_auto_is_docker_labelled_for_the_worker(tmp_path: Path, docker_client: Any) -> None:
    assert docker_problem() == ""
    executor = make_executor(config(tmp_path, workers=2), owner_id=NODE_ID, worker=1)
    assert isinstance(executor, DockerExecutor) and executor.sandboxed
    assert executor.owner_id == worker_owner_id(NODE_ID, 1)


@pytest.mark.docker
def test_a_node_that_lends_network_gives_its_docker_executor_an_egress_proxy(
    tmp_path: Path, docker_client: Any
) -> None:
    lending = make_executor(
        config(tmp_path, egress=True, egress_allow=("198.51.100.0/24",)), owner_id=NODE_ID
    )
    assert isinstance(lending, DockerExecutor) and lending.egress is not None
    assert [str(n) for n in lending.egress.allow_networks] == ["198.51.100.0/24"]
    plain = make_executor(config(tmp_path), owner_id=NODE_ID)
    assert isinstance(plain, DockerExecutor) and plain.egress is None
    with pytest.raises(ConfigError, match="egress_allow"):
        check(config(tmp_path, egress=True, egress_allow=("not-a-range",)))

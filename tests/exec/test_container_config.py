"""What every function container is created with (`p2pfaas.exec.container_config`), read from the
arguments themselves; tests/exec/test_hardening.py attacks the containers these make."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import docker

from p2pfaas.exec.base import INSTANCE_ENV, FunctionSpec
from p2pfaas.exec.container_config import (
    CONTAINER_DEPS_DIR,
    LABEL_DIGEST,
    LABEL_GROUP,
    LABEL_INSTANCE,
    LABEL_OWNER,
    container_args,
)

# An API version given: nothing here asks the engine (no daemon is reached).
API = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")


def _args(fn: FunctionSpec, socket_dir: Path, **overrides: object) -> dict[str, object]:
    options: dict[str, object] = dict(
        image="p2pfaas/runtime-python:0.1",
        owner_id="node-a",
        group="node",
        tmpfs_mb=16,
        pids_limit=64,
        cpus=0.5,
        cgroup_parent=None,
        orphan_exit_ms=0,
    )
    options.update(overrides)
    return container_args(API, fn, "0123456789", socket_dir, **options)  # type: ignore[arg-type]


def test_a_container_is_hardened_and_limited_and_says_whose_it_is(
    function: FunctionSpec, tmp_path: Path
) -> None:
    args = _args(function, tmp_path / "sock")
    host = args["host_config"]
    assert isinstance(host, dict)
    assert (host["NetworkMode"], host["CapDrop"], host["SecurityOpt"]) == (
        "none",
        ["ALL"],
        ["no-new-privileges"],
    )
    assert host["ReadonlyRootfs"] is True and host["Tmpfs"] == {"/tmp": "size=16m,mode=1777"}
    assert host["ShmSize"] == 16 << 20 and host["PidsLimit"] == 64
    assert host["Memory"] == host["MemorySwap"] == function.memory_mb << 20  # no swap
    assert host["NanoCpus"] == 500_000_000 and host["OomScoreAdj"] == 1000
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 1024}]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}}
    assert sorted(host["Binds"]) == sorted(
        [f"{function.code_dir.absolute()}:/fn:ro", f"{tmp_path / 'sock'}:/run/p2pfaas:rw"]
    )
    assert not host.get("Mounts") and not host.get("CgroupParent")
    assert args["user"] == "65534:65534" and args["environment"] == INSTANCE_ENV
    assert args["command"] == [
        "--socket",
        "/run/p2pfaas/shim.sock",
        "--code-dir",
        "/fn",
        "--handler",
        "handler:main",
    ]
    assert args["labels"] == {
        LABEL_OWNER: "node-a",
        LABEL_GROUP: "node",
        LABEL_DIGEST: function.digest,
        LABEL_INSTANCE: "0123456789",
    }
    assert args["name"] == "p2pfaas-node-a-0123456789"


def test_dependencies_concurrency_the_orphan_exit_and_the_nodes_cgroup_reach_the_container(
    function: FunctionSpec, tmp_path: Path
) -> None:
    deps = tmp_path / "deps"
    fn = dataclasses.replace(function, deps_dir=deps, concurrency=3)
    args = _args(fn, tmp_path / "sock", cgroup_parent="p2pfaas-node", orphan_exit_ms=5000)
    host = args["host_config"]
    assert isinstance(host, dict)
    [mount] = host["Mounts"]
    assert (mount["Target"], mount["Source"], mount["Type"], mount["ReadOnly"]) == (
        CONTAINER_DEPS_DIR,
        str(deps.absolute()),
        "bind",
        True,
    )
    assert host["CgroupParent"] == "p2pfaas-node"
    command = args["command"]
    assert isinstance(command, list)
    assert command[6:] == ["--deps-dir", "/deps", "--concurrency", "3", "--orphan-exit-ms", "5000"]

"""What every function container is created with: the hardening, the limits, the mounts, the
shim's command line and the labels that say whose it is. The Docker executor (`docker_exec.py`)
creates containers with these arguments.

Every container gets: no network, all capabilities dropped, no-new-privileges, a read-only root
with small /tmp and /dev/shm tmpfs, pids/memory (no swap)/CPU limits, a nofile limit, the highest
OOM score, uid 65534, capped logs, the function's code read-only at /fn (its dependency layer
read-only at /deps) and its socket's directory at /run/p2pfaas (with, for a function that declares
egress, the node's egress proxy's socket there and `HTTPS_PROXY` at the shim's forwarder). It
builds arguments only: it makes no Docker call that reaches the engine, and does not seal the
socket's directory (the instance does, once the shim listens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import docker.types

from p2pfaas.exec.base import INSTANCE_ENV, FunctionSpec
from p2pfaas.exec.egress import PROXY_PORT
from p2pfaas.exec.egress import SOCKET_NAME as EGRESS_SOCKET
from p2pfaas.exec.run_dir import SOCKET_NAME

LABEL_OWNER = "p2pfaas.owner"  # the executor
LABEL_GROUP = "p2pfaas.group"  # the node: all its worker processes' executors
LABEL_DIGEST = "p2pfaas.digest"  # the function
LABEL_INSTANCE = "p2pfaas.instance"
RUNTIME_UID = 65534  # nobody:nogroup in every Debian base
CONTAINER_CODE_DIR = "/fn"
CONTAINER_DEPS_DIR = "/deps"  # the function's dependency layer, read-only (`p2pfaas.node.layers`)
CONTAINER_SOCKET_DIR = "/run/p2pfaas"
EGRESS_PATH = f"{CONTAINER_SOCKET_DIR}/{EGRESS_SOCKET}"  # the node's egress proxy, inside


def egress_env() -> dict[str, str]:
    """What points a function's HTTP libraries at the shim's forwarder (runtime/forwarder.py)."""
    proxy = f"http://127.0.0.1:{PROXY_PORT}"
    return {name: proxy for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}


def container_args(
    api: docker.APIClient,
    fn: FunctionSpec,
    instance_id: str,
    socket_dir: Path,
    *,
    image: str,
    owner_id: str,
    group: str,
    tmpfs_mb: int,
    pids_limit: int,
    cpus: float,
    cgroup_parent: str | None,
    orphan_exit_ms: int,
) -> dict[str, Any]:
    """The arguments of `api.create_container` for instance `instance_id` of `fn`, its shim's socket
    in the host directory `socket_dir`. `cpus` is the instance's CPU limit; `cgroup_parent` the
    node's parent cgroup (None: Docker's default); `orphan_exit_ms` the shim's `--orphan-exit-ms`
    (0: never)."""
    host_config = api.create_host_config(
        binds={
            str(fn.code_dir.absolute()): {"bind": CONTAINER_CODE_DIR, "mode": "ro"},
            str(socket_dir): {"bind": CONTAINER_SOCKET_DIR, "mode": "rw"},
        },
        # A mount, not a bind: dockerd refuses a source that is gone (a layer evicted meanwhile)
        # rather than creating an empty directory in its place.
        mounts=[]
        if fn.deps_dir is None
        else [
            docker.types.Mount(CONTAINER_DEPS_DIR, str(fn.deps_dir.absolute()), type="bind", read_only=True)
        ],
        network_mode="none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        tmpfs={"/tmp": f"size={tmpfs_mb}m,mode=1777"},
        shm_size=f"{tmpfs_mb}m",  # /dev/shm too (Docker's default is 64 MB)
        pids_limit=pids_limit,
        mem_limit=f"{fn.memory_mb}m",
        memswap_limit=f"{fn.memory_mb}m",  # equal to mem_limit: no swap
        nano_cpus=int(cpus * 1e9),
        ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=1024)],
        # Under host memory pressure, the kernel should kill a function before the volunteer's apps.
        oom_score_adj=1000,
        # Every container of this node shares the cores and memory its volunteer lends.
        cgroup_parent=cgroup_parent,
        log_config=docker.types.LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
    )
    return dict(
        image=image,
        command=[
            *("--socket", f"{CONTAINER_SOCKET_DIR}/{SOCKET_NAME}"),
            *("--code-dir", CONTAINER_CODE_DIR),
            *("--handler", fn.handler),
            *(("--deps-dir", CONTAINER_DEPS_DIR) if fn.deps_dir is not None else ()),
            *(("--concurrency", str(fn.concurrency)) if fn.concurrency > 1 else ()),
            *(("--orphan-exit-ms", str(orphan_exit_ms)) if orphan_exit_ms else ()),
            *(
                (
                    "--egress-port",
                    str(PROXY_PORT),
                    "--egress-socket",
                    f"{CONTAINER_SOCKET_DIR}/{EGRESS_SOCKET}",
                )
                if fn.egress
                else ()
            ),
        ],
        name=f"p2pfaas-{owner_id[:16]}-{instance_id}",
        labels={
            LABEL_OWNER: owner_id,
            LABEL_GROUP: group,
            LABEL_DIGEST: fn.digest,
            LABEL_INSTANCE: instance_id,
        },
        user=f"{RUNTIME_UID}:{RUNTIME_UID}",
        environment={**INSTANCE_ENV, **(egress_env() if fn.egress else {})},
        host_config=host_config,
    )

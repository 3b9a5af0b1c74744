"""The executor a node's config asks for: Docker when an engine answers, the unsandboxed process
executor only when the volunteer said so; never a silent downgrade."""

from __future__ import annotations

import logging

from p2pfaas.errors import ConfigError
from p2pfaas.exec.base import Executor
from p2pfaas.node.settings import NodeConfig, egress_networks, share
from p2pfaas.node.workers.paths import worker_dir, worker_owner_id

log = logging.getLogger(__name__)

UNSANDBOXED_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! NO SANDBOX: functions run as plain processes on this machine, with your user's rights.\n"
    "!! This is for a trusted local devnet only. Install Docker for real isolation.\n" + "!" * 78
)


def docker_problem() -> str:
    """'' if a Docker engine answers a ping, else why not. Blocking: call it in a thread."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # the SDK raises many unrelated types when no engine is there
        return f"{type(exc).__name__}: {exc}"
    return ""


def make_executor(config: NodeConfig, *, owner_id: str, worker: int = 0) -> Executor:
    """The executor `config` asks for, for worker process `worker` of the node `owner_id` (its share
    of the slots and memory); raises ConfigError instead of ever degrading silently.

    Blocking (it pings the Docker engine): call it in a thread from async code.
    """
    run_dir = (config.work_dir if worker == 0 else worker_dir(config.work_dir, worker)) / "run"
    memory_cap_mb = share(config.memory_mb, config.workers, worker)
    if config.executor not in ("docker", "process", "auto"):
        raise ConfigError(f"unknown executor {config.executor!r}: use docker, process or auto")
    reason = ""
    if config.executor in ("docker", "auto"):
        reason = docker_problem()
        if not reason:
            from p2pfaas.exec import docker_exec, runtime_image

            executor = docker_exec.DockerExecutor(
                image=config.runtime_image or runtime_image.RUNTIME_IMAGE_TAG,
                owner_id=worker_owner_id(owner_id, worker),
                group=owner_id,  # every worker's containers: one parent cgroup, one orphan sweep
                work_dir=run_dir,
                node_cpus=config.cpus,  # one parent cgroup: all containers share what is lent
                node_memory_mb=config.memory_mb,
                memory_cap_mb=memory_cap_mb,  # warm instances' limits, summed, stay within it too
                # one function may use every slot of this process's share
                max_per_function=share(config.slots, config.workers, worker),
                node_slots=config.slots,  # without a node cgroup, each instance gets cpus / slots
            )
            if config.egress:  # the volunteer lends network to functions that declare it
                from p2pfaas.exec.egress import EgressProxy

                executor.egress = EgressProxy(allow_networks=egress_networks(config))
            return executor
        if config.executor == "docker":
            raise ConfigError(f"--executor docker, but no Docker engine answers: {reason}")
    if not config.allow_unsandboxed:
        raise ConfigError(
            f"no Docker engine is usable ({reason or 'process executor requested'}); refusing to run "
            "functions unsandboxed. Start Docker, or pass --allow-unsandboxed on a trusted machine."
        )
    from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor

    log.warning("%s%s", UNSANDBOXED_WARNING, f"\n!! reason: {reason}" if reason else "")
    return UnsandboxedProcessExecutor(work_dir=run_dir, memory_cap_mb=memory_cap_mb)

"""Runs functions in hardened warm Docker containers: the production executor.

Each warm instance is one container of the runtime image (see `runtime_image`) running the shim
as PID 1, reached over a unix socket in a per-container host directory that is bind-mounted at
/run/p2pfaas. That directory is writable for the shim only until the node's first connection, then
sealed read-only (mode 0555, the node's own) before the shim imports the function: the function can
write nothing on the host (`_ContainerInstance._seal`). The function's code is bind-mounted
read-only at /fn. What every container is created with (no network, no capabilities, a read-only
root, the manifest's limits, uid 65534, the labels that say whose it is) is `container_config.py`.

The docker SDK is synchronous, so every Docker call runs in a thread, and none is made on a warm
invocation: the hot path is the persistent shim connection. Pooling, timeouts and the error
contract live in `WarmPool`; this module only starts, diagnoses and removes containers.

Nothing a call starts outlives it: the shim kills the container's other processes when its last
call in flight ends, before answering (so the call is metered until they are dead), and the pool
replaces an instance whose pids cgroup still holds more than the shim's own threads after a call
(`_ContainerInstance.strays`): a thread left running, or a function that disabled the shim's kill.

A container outlives no node: its shim exits once the node has held no connection to it for
`orphan_grace_s` (the node holds one per warm instance, which the kernel closes when the node dies,
even by SIGKILL). The stopped container holds no CPU or memory; it is not auto-removed (diagnosing
a dead instance inspects its exit state), so the node's next start removes it with the other orphans.

Each container is metered through its own cgroup (`metering.CgroupMeter`, opened once at boot).
It does not build the image (`runtime_image` does) or verify bundles (the node does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from p2pfaas.errors import ConfigError, ExecutorError, InvokeError, MemoryExceeded
from p2pfaas.exec import node_cgroup
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.container_config import LABEL_GROUP, LABEL_OWNER, container_args
from p2pfaas.exec.egress import SOCKET_NAME as EGRESS_SOCKET
from p2pfaas.exec.egress import EgressProxy, EgressServer
from p2pfaas.exec.forecast import ArrivalForecast
from p2pfaas.exec.instance import ShimInstance
from p2pfaas.exec.metering import CgroupMeter
from p2pfaas.exec.node_cgroup import NodeCgroup
from p2pfaas.exec.pool_policy import KeepAlivePolicy
from p2pfaas.exec.pooled import PooledExecutor
from p2pfaas.exec.run_dir import RunDir
from p2pfaas.exec.runtime_image import RUNTIME_IMAGE_TAG
from p2pfaas.exec.shim_client import connect_when_ready
from p2pfaas.exec.warm_pool import WarmPool

log = logging.getLogger(__name__)

_OWNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EXIT_WAIT_S = 5.0  # how long a container whose connection broke gets to finish dying
_SOCKET_POLL_S = 0.002  # during startup, how often to try the shim's socket (a failed connect is cheap)
_SEALED_MODE = 0o555  # the socket's directory once the shim listens: nobody writes in it
_STATUS_CHECK_S = 0.5  # during startup, how often to ask Docker whether the container died
_T = TypeVar("_T")


def _shim_tasks(concurrency: int, connections: int, *, watchdog: bool) -> int:
    """The threads an idle shim runs (see `runtime/serving.py` `serve`, `runtime/watchdog.py`)."""
    return 1 + watchdog + (connections if concurrency > 1 else 0)


async def _docker(what: str, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run a blocking SDK call in a thread; any failure (SDK or HTTP) becomes `ExecutorError`."""
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except docker.errors.NotFound:
        raise
    except Exception as exc:  # the SDK raises its own errors and raw `requests` ones alike
        raise ExecutorError(f"docker {what} failed: {exc}") from exc


class _ContainerInstance(ShimInstance):
    """One container; driven by `WarmPool`."""

    def __init__(self, fn: FunctionSpec, instance_id: str, *, executor: DockerExecutor) -> None:
        super().__init__(instance_id, executor.run_dir)
        self.container_id = ""
        self._fn = fn
        self._executor = executor
        self._egress: EgressServer | None = None

    async def boot(self, *, timeout_s: float) -> None:
        socket_dir = self.run_dir.instance_dir(self.instance_id)
        socket_dir.mkdir(mode=0o700)  # a local mkdir: not worth a thread
        if self._fn.egress:  # the node's proxy for it, before any of its code can run (exec/egress.py)
            proxy = self._executor.egress
            if proxy is None:
                raise ExecutorError("this function reaches the network and this node lends none")
            self._egress = await proxy.serve(socket_dir / EGRESS_SOCKET, self._fn.egress, self._fn.digest)
        await _docker("create/start", self._create_and_start)
        self._connection = await connect_when_ready(
            self.socket_path,
            timeout_s=timeout_s,
            exit_reason=self._exit_reason,
            check_every_s=_STATUS_CHECK_S,
            poll_s=_SOCKET_POLL_S,
            on_connect=self._seal,
        )
        cgroup = self._executor.node_cgroup
        self._meter = CgroupMeter.for_container(self.container_id, parent=cgroup.parent if cgroup else "")

    def _create_and_start(self) -> None:
        socket_dir = self.run_dir.instance_dir(self.instance_id)
        # Ours (the node's uid), and writable for the shim (uid 65534) only until it has bound its
        # socket: `_seal` takes that away before any code of the function runs. The work dir (0700)
        # keeps other local users out meanwhile.
        socket_dir.chmod(0o777)
        executor = self._executor
        # The low-level API: the SDK's high-level create also inspects the new container, a round
        # trip on every cold start that nothing here needs.
        api = executor.client.api
        create_args = container_args(
            api,
            self._fn,
            self.instance_id,
            socket_dir,
            image=executor.image,
            owner_id=executor.owner_id,
            group=executor.group,
            tmpfs_mb=executor.tmpfs_mb,
            pids_limit=executor.pids_limit,
            cpus=executor.instance_cpus(self._fn.cpus),
            cgroup_parent=executor.node_cgroup.parent if executor.node_cgroup else None,
            orphan_exit_ms=executor.orphan_exit_ms,
        )
        created = api.create_container(**create_args)
        self.container_id = created["Id"]
        api.start(self.container_id)

    def strays(self, *, connections: int) -> int:
        """Tasks in the container's pids cgroup beyond the shim's: its main thread, plus with
        concurrency > 1 one thread per open connection."""
        tasks = self._meter.tasks() if isinstance(self._meter, CgroupMeter) else None
        if tasks is None:
            return 0
        watchdog = self._executor.orphan_exit_ms > 0
        expected = _shim_tasks(self._fn.concurrency, connections, watchdog=watchdog) + bool(self._fn.egress)
        return max(tasks - expected, 0)

    def _seal(self) -> None:
        """Make the socket's directory read-only for the container: the shim has bound its socket
        (we are connected) and, until our first request, imports nothing of the function. The
        directory is the node's, so uid 65534 can neither write in it nor chmod it back: the
        function has no writable host path at all (its other mounts are read-only or tmpfs).
        One chmod on a local directory: not worth a thread."""
        os.chmod(self.run_dir.instance_dir(self.instance_id), _SEALED_MODE)

    def _state(self, *, wait_s: float = 0.0) -> dict[str, Any]:
        """The container's State (blocking; in a thread), after waiting up to `wait_s` for it to exit."""
        container = self._executor.client.containers.get(self.container_id)
        if wait_s > 0 and container.status not in ("exited", "dead"):
            # A timed-out wait raises; the state read below then says "still running".
            with contextlib.suppress(Exception):
                container.wait(timeout=wait_s)
            container.reload()
        state: dict[str, Any] = container.attrs.get("State", {})
        return state

    def _logs_tail(self) -> str:
        container = self._executor.client.containers.get(self.container_id)
        return bytes(container.logs(tail=20)).decode(errors="replace").strip()

    async def _exit_reason(self) -> str | None:
        try:
            state = await _docker("inspect", self._state)
            if state.get("Running", False):
                return None
            logs = await _docker("logs", self._logs_tail)
        except docker.errors.NotFound:
            return "the container was removed"
        return f"container exited with status {state.get('ExitCode')}: {logs[-1500:]}"

    async def diagnose(self, error: ExecutorError) -> InvokeError:
        if self._connection is None or not self._connection.lost:
            return error  # a malformed answer: the container is alive but not to be trusted
        # Read the peak at once: the cgroup vanishes soon after the container stops.
        try:
            peak_bytes: int | None = self._meter.end().peak_memory_bytes
        except (OSError, ValueError):
            peak_bytes = None
        try:
            state = await _docker("inspect", self._state, wait_s=_EXIT_WAIT_S)
        except (ExecutorError, docker.errors.NotFound) as exc:
            return ExecutorError(f"{error}; and the container cannot be inspected: {exc}")
        if state.get("Running", False):
            return ExecutorError(f"{error} (the container is still running)")
        # 137 = SIGKILL. Docker's OOMKilled flag says the memory controller sent it; some cgroup v1
        # kernels omit the flag, so a peak at the limit counts too. Any other SIGKILL (an operator's
        # `docker kill`, the host's OOM killer) is the node's failure, not the function's.
        at_limit = peak_bytes is not None and peak_bytes >= (self._fn.memory_mb << 20) - (1 << 20)
        if state.get("OOMKilled") or (state.get("ExitCode") == 137 and at_limit):
            return MemoryExceeded(f"the function exceeded its {self._fn.memory_mb} MB memory limit")
        if state.get("ExitCode") == 137:
            return ExecutorError(
                f"the container was killed (SIGKILL, not by its {self._fn.memory_mb} MB memory limit) "
                "during the invocation; a fresh one serves the next invocation"
            )
        return ExecutorError(
            f"the container died during the invocation (exit status {state.get('ExitCode')}, "
            f"{state.get('Error') or 'no error reported'})"
        )

    async def destroy(self) -> None:
        if self._egress is not None:
            await self._egress.aclose()
        self._meter.close()
        if self._connection is not None:
            await self._connection.aclose()
        if self.container_id:
            with contextlib.suppress(docker.errors.NotFound):  # gone already (aclose's sweep, an operator)
                await _docker("remove", self._remove)
        await asyncio.to_thread(self.run_dir.remove, self.instance_id)

    def _remove(self) -> None:
        self._executor.client.api.remove_container(self.container_id, force=True, v=True)


class DockerExecutor(PooledExecutor):
    """An `Executor` running warm containers per function digest; driven by `invoke` calls."""

    kind = "docker"
    sandboxed = True

    def __init__(
        self,
        *,
        owner_id: str,
        work_dir: Path,
        image: str = RUNTIME_IMAGE_TAG,
        max_per_function: int = 4,
        keep_alive_s: float = 300.0,
        startup_timeout_s: float = 30.0,
        pids_limit: int = 64,
        tmpfs_mb: int = 16,
        node_cpus: float = 0.0,
        node_memory_mb: int = 0,
        client_factory: Callable[[], docker.DockerClient] | None = None,
        keep_alive: KeepAlivePolicy | None = None,
        forecast: ArrivalForecast | None = None,
        memory_cap_mb: int = 0,
        group: str = "",
        node_slots: int = 0,
        orphan_grace_s: float = 5.0,
    ) -> None:
        for name in (owner_id, group or owner_id):
            if not _OWNER_ID.match(name):
                raise ConfigError(f"owner id must match {_OWNER_ID.pattern}, got {name!r}")
        self.owner_id = owner_id
        self.egress: EgressProxy | None = None  # set by a node whose volunteer lends network (--egress)
        # The node's executors, one per worker process, share one parent cgroup (what is lent holds
        # node-wide); the group's leader (owner == group) starts first and sweeps the whole group.
        self.group = group or owner_id
        self.image = image
        self.pids_limit = pids_limit
        self.tmpfs_mb = tmpfs_mb
        # What the volunteer lends in all (0: no node-wide limit), enforced by one parent cgroup.
        self.node_cpus = node_cpus
        self.node_memory_mb = node_memory_mb
        self.node_slots = node_slots or max_per_function  # invocations the whole node runs at once
        self.node_cgroup: NodeCgroup | None = None
        # A container whose shim has had no connection from us this long stops itself: we are
        # gone (the pool holds one connection to every instance for its whole life). 0: never.
        self.orphan_exit_ms = max(round(orphan_grace_s * 1000), 0)
        self.run_dir = RunDir(work_dir)
        self._client_factory = client_factory or (lambda: docker.from_env(timeout=60))
        self._client: docker.DockerClient | None = None
        self._pool = WarmPool(
            factory=self._new_instance,
            max_per_function=max_per_function,
            keep_alive_s=keep_alive_s,
            startup_timeout_s=startup_timeout_s,
            keep_alive=keep_alive,
            forecast=forecast,
            memory_cap_mb=memory_cap_mb,
        )

    @property
    def client(self) -> docker.DockerClient:
        assert self._client is not None, "start() first"
        return self._client

    def _new_instance(self, fn: FunctionSpec, instance_id: str) -> _ContainerInstance:
        return _ContainerInstance(fn, instance_id, executor=self)

    async def start(self) -> None:
        """Connect to the engine, check the image, remove this owner's orphaned containers (the group
        leader: every orphan of the node's worker processes)."""
        self._client = await _docker("connect", self._client_factory)
        try:
            await _docker("inspect image", self.client.images.get, self.image)
        except docker.errors.NotFound:
            raise ExecutorError(
                f"runtime image {self.image} is missing: run `p2pfaas runtime build`"
            ) from None
        await self._remove_owned_containers(group=self.group == self.owner_id)
        await asyncio.to_thread(self.run_dir.sweep)
        await asyncio.to_thread(self.run_dir.create)
        if self.node_cpus > 0 or self.node_memory_mb > 0:
            driver = (await _docker("info", self.client.info)).get("CgroupDriver", "")
            prepared = (
                await asyncio.to_thread(
                    node_cgroup.prepare,
                    f"p2pfaas-{self.group[:16]}",
                    cpus=self.node_cpus or float(os.cpu_count() or 1),
                    memory_mb=self.node_memory_mb or (1 << 30),
                )
                if driver == "cgroupfs"  # the systemd driver wants a slice, managed through systemd
                else f"the Docker engine's cgroup driver is {driver!r}, not cgroupfs"
            )
            if isinstance(prepared, str):
                log.warning(
                    "%s; no node-wide cgroup: each instance gets %.2f cores (%g lent / %d slots), and "
                    "admission holds the memory lent",
                    *(prepared, self.instance_cpus(1.0), self.node_cpus, self.node_slots),
                )
            else:
                self.node_cgroup = prepared
        await self._pool.start()

    async def aclose(self) -> None:
        """Remove every container of this owner, including any a cancelled start left behind."""
        await self._pool.aclose()
        if self._client is not None:
            await self._remove_owned_containers()
            await asyncio.to_thread(self._client.close)
            self._client = None
        if self.node_cgroup is not None:
            await asyncio.to_thread(self.node_cgroup.remove)

    def instance_cpus(self, cpus: float) -> float:
        """An instance's CPU limit, for a function that asks for `cpus`. Under the node's parent
        cgroup the kernel holds all instances together to what is lent (and cgroup v1 refuses a
        child quota above its parent's). Without one (Docker's systemd cgroup driver, no rights to
        the cgroup tree) each instance gets an equal part of what is lent, one per slot, so that
        what runs at once still fits in it."""
        if self.node_cpus <= 0:
            return cpus
        if self.node_cgroup is not None:
            return min(cpus, self.node_cpus)
        return min(cpus, self.node_cpus / self.node_slots)

    def container_id(self, instance_id: str) -> str | None:
        """The Docker id of a live instance: the seam for cgroup metering."""
        instance = self._pool.instance(instance_id)
        return instance.container_id if isinstance(instance, _ContainerInstance) else None

    async def _remove_owned_containers(self, *, group: bool = False) -> None:
        labels = [f"{LABEL_OWNER}={self.owner_id}", *([f"{LABEL_GROUP}={self.group}"] if group else [])]

        def remove_all() -> None:
            owned = [
                summary
                for label in labels
                for summary in self.client.api.containers(all=True, filters={"label": label})
            ]
            for summary in owned:
                with contextlib.suppress(docker.errors.NotFound):  # removed meanwhile by its instance
                    self.client.api.remove_container(summary["Id"], force=True, v=True)

        await _docker("remove owned containers", remove_all)

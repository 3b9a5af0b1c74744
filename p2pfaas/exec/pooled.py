"""What the Docker and process executors share: invocations and introspection through a `WarmPool`.

What this does not do: say what an instance is (each executor's instance class does) or start and
close anything (each executor's own `start` and `aclose`).
"""

from __future__ import annotations

from p2pfaas.exec.base import ExecResult, FunctionSpec
from p2pfaas.exec.shim_client import ShimConnection
from p2pfaas.exec.warm_pool import WarmPool


class PooledExecutor:
    """What the Docker and process executors share: invocations and introspection via a `WarmPool`.

    Subclasses set `self._pool` and add their own `start`/`aclose` (what an instance *is* differs).
    """

    _pool: WarmPool

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        return await self._pool.invoke(fn, payload, timeout_s=timeout_s)

    def instance_ids(self, digest: str | None = None) -> list[str]:
        return self._pool.instance_ids(digest)

    def warm_digests(self) -> dict[str, int]:
        """Digest -> booted instances, for placement (#6) and the capacity advert."""
        return self._pool.warm_digests()

    async def prewarm(self, spec: FunctionSpec, count: int) -> None:
        """Have at least `count` warm instances of `spec` (within this node's pool limits)."""
        await self._pool.prewarm(spec, count)

    def release(self, digest: str) -> None:
        """Destroy `digest`'s idle instances now."""
        self._pool.release(digest)

    def shim_connection(self, instance_id: str) -> ShimConnection | None:
        """The live instance's own shim connection, for measuring the floor in benchmarks.

        The pool sends on it too: use it only while nothing else invokes this function.
        """
        instance = self._pool.instance(instance_id)
        return instance.connection if instance is not None else None

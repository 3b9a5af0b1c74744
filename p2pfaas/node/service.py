"""What a node does with an invocation, independent of HTTP.

`NodeService.invoke` checks the request's signature, finds the bundle (local cache, else fetched
from the anchor by digest and verified), checks that the caller owns the function, runs it on the
executor and returns a result signed with the node key. Function failures, timeouts and memory
exhaustion come back as signed results with a `p2pfaas.*` or the exception's error type; only
requests that should not have been made (bad signature, unknown function) raise.

It does not place work elsewhere (issue #6), meter usage (issue #4) or charge (issue #5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from p2pfaas import signing
from p2pfaas.bundle import BundleCache
from p2pfaas.errors import ExecutorError, InvokeTimeout, MemoryExceeded, NotFound
from p2pfaas.exec.base import ExecResult, Executor, FunctionSpec
from p2pfaas.identity import KeyPair
from p2pfaas.messages import (
    ERROR_EXECUTOR,
    ERROR_MEMORY,
    ERROR_TIMEOUT,
    Bundle,
    BundleHeader,
    InvokeRequest,
    InvokeResult,
)
from p2pfaas.rpc import Forbidden

BundleFetcher = Callable[[str], Awaitable[Bundle]]  # digest -> Bundle, raises NotFound


@dataclass
class NodeStats:
    invocations: int = 0
    in_flight: int = 0
    failures: int = 0


@dataclass
class NodeService:
    """Runs signed invocations. Driven by the HTTP app (or, in the simulator, the same app)."""

    keys: KeyPair
    executor: Executor
    cache: BundleCache
    fetch_bundle: BundleFetcher
    cpus_per_instance: float = 1.0
    url: str = ""  # where this node serves; set once its HTTP site is bound
    stats: NodeStats = field(default_factory=NodeStats)
    _known: dict[str, tuple[BundleHeader, Path]] = field(default_factory=dict)
    _fetches: dict[str, asyncio.Future[tuple[BundleHeader, Path]]] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.keys.key_id

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        caller = signing.verify(request)  # SignatureError -> 403
        header, code_dir = await self._bundle(request.digest)
        if header.signer != caller.raw:
            raise Forbidden("only the function's owner may invoke it (vouchers for others: issue #5)")
        manifest = header.manifest
        spec = FunctionSpec(
            digest=request.digest,
            code_dir=code_dir,
            handler=manifest.handler,
            memory_mb=manifest.memory_mb,
            timeout_s=manifest.timeout_s,
            cpus=self.cpus_per_instance,
        )
        timeout_s = min(request.timeout_s, manifest.timeout_s)
        self.stats.invocations += 1
        self.stats.in_flight += 1
        try:
            result = await self.executor.invoke(spec, request.payload, timeout_s=timeout_s)
        except InvokeTimeout as exc:
            result = _failure(
                ERROR_TIMEOUT, f"function ran past its {timeout_s:g} s timeout and was killed: {exc}"
            )
        except MemoryExceeded as exc:
            result = _failure(
                ERROR_MEMORY, f"function exceeded its {manifest.memory_mb} MB memory limit: {exc}"
            )
        except ExecutorError as exc:
            result = _failure(ERROR_EXECUTOR, f"the node's executor failed: {exc}")
        finally:
            self.stats.in_flight -= 1
        if not result.ok:
            self.stats.failures += 1
        return signing.sign(
            InvokeResult(
                invocation_id=request.invocation_id,
                digest=request.digest,
                ok=result.ok,
                output=result.output,
                error_type=result.error_type,
                error_message=result.error_message[:4000],
                traceback=result.traceback[-60_000:],
                duration_s=result.duration_s,
                cold=result.cold,
                receipt=None,
                signer=b"",
                signature=b"",
            ),
            self.keys,
        )

    async def _bundle(self, digest: str) -> tuple[BundleHeader, Path]:
        """The verified header and extracted code of `digest`: from memory, the disk cache or a fetch."""
        known = self._known.get(digest)
        if known is not None:
            return known
        cached = self.cache.archive(digest)
        if cached is not None:
            path = self.cache.path_for(digest) or await self.cache.store(cached)
            self._known[digest] = (cached.header, path)
            return self._known[digest]
        # Concurrent first invocations of one function share a single fetch.
        fetch = self._fetches.get(digest)
        if fetch is None:
            # The fetch outlives a cancelled first caller so later callers can still use it; its
            # result is consumed in the callback so a failure nobody awaits is not reported twice.
            fetch = asyncio.ensure_future(self._fetch_and_store(digest))
            self._fetches[digest] = fetch
            fetch.add_done_callback(lambda done: self._fetch_done(digest, done))
        return await asyncio.shield(fetch)

    def _fetch_done(self, digest: str, done: asyncio.Future[tuple[BundleHeader, Path]]) -> None:
        self._fetches.pop(digest, None)
        if not done.cancelled():
            done.exception()

    async def _fetch_and_store(self, digest: str) -> tuple[BundleHeader, Path]:
        bundle = await self.fetch_bundle(digest)  # NotFound -> 404
        if bundle.header.digest != digest:
            raise NotFound(f"the registry answered digest {digest} with {bundle.header.digest}")
        path = await self.cache.store(bundle)  # verifies; BundleError -> refused
        self._known[digest] = (bundle.header, path)
        return self._known[digest]


def _failure(error_type: str, message: str) -> ExecResult:
    return ExecResult(ok=False, error_type=error_type, error_message=message)

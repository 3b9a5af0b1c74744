"""What a node does with an invocation, independent of HTTP.

`NodeService.invoke` checks the request's signature, finds the bundle (memory, the disk cache, else
fetched by digest from peers that announced it or from the anchor, and verified), asks the
`authorize` hook whether the caller may run it (default: only the function's owner), waits for
room in `admission`, runs it on the executor and returns a result signed with the node key, with a
signed `Receipt` of the metered usage and its price, also handed to the `on_receipt` hook.
Function failures, timeouts and memory exhaustion come back as signed results with a `p2pfaas.*`
or the exception's error type; only requests that should not have been made (bad signature,
unknown function, not allowed) or cannot be served now (`errors.Busy`) raise.

Hooks (all optional; see the helpers' contracts): `authorize` (vouchers, issue #5), `on_receipt`
(receipt batching, issue #5); the bundles' own (`find_providers`, `on_bundle_cached`: the DHT,
issue #3) are on its `BundleSource` (node/bundles.py).
It does not place work elsewhere (the router does, issue #6).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from p2pfaas import logfmt, signing
from p2pfaas.bundle.lock import read_lock
from p2pfaas.clock import wall_time
from p2pfaas.errors import (
    BundleError,
    Busy,
    ExecutorError,
    InvokeTimeout,
    MemoryExceeded,
    P2PFaaSError,
    RemoteError,
)
from p2pfaas.exec.base import ExecResult, Executor, FunctionSpec
from p2pfaas.identity import KeyPair, PublicKey
from p2pfaas.messages import (
    ERROR_EXECUTOR,
    ERROR_MEMORY,
    ERROR_TIMEOUT,
    MAX_LOG_CHARS,
    BundleHeader,
    ChannelTickets,
    Delegation,
    InvokeRequest,
    InvokeResult,
    Receipt,
    request_sha256,
)
from p2pfaas.metrics.catalog import NodeMetrics
from p2pfaas.node.admission import Admission, Limits
from p2pfaas.node.bundles import BundleSource
from p2pfaas.node.layers import LayerCache
from p2pfaas.pricing import Prices
from p2pfaas.rpc import Forbidden

log = logging.getLogger(__name__)

# (request, its bundle's header, the caller's key, the delegations that brought it here); raises
# Forbidden (or PaymentRequired) to refuse.
Authorizer = Callable[[InvokeRequest, BundleHeader, bytes, tuple[Delegation, ...]], None]


def owner_only(
    request: InvokeRequest, header: BundleHeader, caller: bytes, delegations: tuple[Delegation, ...] = ()
) -> None:
    """The default authorizer: only the key that signed the function may run it (unpaid, as on a devnet)."""
    if header.signer != caller:
        raise Forbidden("only the function's owner may invoke it without a voucher")


@dataclass
class NodeStats:
    invocations: int = 0
    in_flight: int = 0
    failures: int = 0
    busy: int = 0


@dataclass
class NodeService:
    """Runs signed invocations. Driven by the HTTP app (or, in the simulator, the same app)."""

    keys: KeyPair
    executor: Executor
    bundles: BundleSource  # memory, the disk cache, peers, the anchor (`p2pfaas.node.bundles`)
    cpus_per_instance: float = 1.0
    url: str = ""  # where this node serves; set once its HTTP site is bound
    authorize: Authorizer | None = None  # None: `owner_only`
    prices: Prices = field(default_factory=Prices)
    on_receipt: Callable[[Receipt], None] | None = None
    # Lessees' channel tickets (`POST /v1/channels`, `NodePayments.offer_channels`); None: unpaid node
    offer_channels: Callable[[ChannelTickets], int] | None = None
    admission: Admission = field(default_factory=lambda: Admission(Limits()))
    rng: random.Random = field(default_factory=random.Random)
    stats: NodeStats = field(default_factory=NodeStats)
    metrics: NodeMetrics | None = None  # Prometheus figures (`p2pfaas.metrics`); None: not recorded
    layers: LayerCache | None = None  # dependency layers (`p2pfaas.node.layers`); None: none taken
    _layers: dict[str, Path | None] = field(default_factory=dict)  # digest -> its unpacked layer
    _verified: dict[int, tuple[weakref.ref[InvokeRequest], PublicKey]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bundles.own_url = lambda: self.url
        # Never evict what runs or is warm: its container has the tree bind-mounted.
        self.bundles.pinned = lambda: {*self.admission.running_digests(), *_warm_digests(self.executor)}
        if self.layers is not None:
            self.layers.pinned = self.mounted_layers  # asked at each eviction

    @property
    def node_id(self) -> str:
        return self.keys.key_id

    async def aclose(self) -> None:
        """Cancel the bundle fetches still running (their callers wait on them no more)."""
        await self.bundles.aclose()
        if self.layers is not None:
            await self.layers.aclose()

    def verify_request(self, request: InvokeRequest) -> PublicKey:
        """The request's signer, its signature checked once per request object: the router checks
        the same object before the service does, and Ed25519 verification is the dearest step of
        a warm invocation. Keyed by object identity (held weakly), never by content."""
        entry = self._verified.get(id(request))
        if entry is not None and entry[0]() is request:
            return entry[1]
        signer = signing.verify(request)
        if len(self._verified) >= 1024:
            self._verified.clear()
        self._verified[id(request)] = (weakref.ref(request), signer)
        return signer

    async def invoke(
        self, request: InvokeRequest, *, delegations: tuple[Delegation, ...] = ()
    ) -> InvokeResult:
        """Run `request` here; `delegations` are the forwards that brought a paid one (its receipt's)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        caller = self.verify_request(request)  # SignatureError -> 403
        header, code_dir = await self.bundles.get(request.digest)
        manifest = header.manifest
        logfmt.annotate(invocation=request.invocation_id, function=manifest.name)
        try:
            (self.authorize or owner_only)(request, header, caller.raw, delegations)
        except P2PFaaSError:
            if self.metrics is not None:
                self.metrics.not_run(manifest.name, "refused")
            raise
        spec = await self._spec(request.digest, header, code_dir)
        timeout_s = min(request.timeout_s, manifest.timeout_s)
        queued = loop.time()
        try:
            async with self.admission.slot(request.digest, manifest.memory_mb, timeout_s=timeout_s):
                self.stats.invocations += 1
                self.stats.in_flight += 1
                started = loop.time()
                try:
                    result = await self._run(spec, request.payload, timeout_s=timeout_s)
                finally:
                    self.stats.in_flight -= 1
                wall_s = loop.time() - started
        except RemoteError as exc:
            if getattr(exc, "status", 0) == 503:
                self.stats.busy += 1
                if self.metrics is not None:
                    self.metrics.not_run(manifest.name, "busy")
            raise
        if not result.ok:
            self.stats.failures += 1
        receipt = self._receipt(request, caller.raw, result, wall_s, delegations)
        if receipt is not None and self.on_receipt is not None:
            self.on_receipt(receipt)
        signed = signing.sign(
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
                receipt=receipt,
                signer=b"",
                signature=b"",
                logs=result.logs[-MAX_LOG_CHARS:],
            ),
            self.keys,
        )
        if self.metrics is not None:
            self.metrics.invoked(
                manifest.name, "ok" if result.ok else "failed", queue_s=started - queued, run_s=wall_s,
                total_s=loop.time() - began, cold=result.cold,
                cold_start_s=max(0.0, wall_s - result.duration_s),
            )  # fmt: skip
        return signed

    async def spec_for(self, digest: str) -> FunctionSpec:
        """What the executor needs to run `digest` (fetched and verified if need be): for pre-warming
        an instance exactly as an invocation would start it. Raises NotFound/BundleError like invoke."""
        return await self._spec(digest, *await self.bundles.get(digest))

    async def _layer(self, digest: str, code_dir: Path) -> Path | None:
        """The unpacked dependency layer of `digest`'s lock (fetched the first time), or None when
        it has none. Raises BundleError when this node cannot take it."""
        if digest in self._layers:
            site = self._layers[digest]
            if site is None:
                return None
            assert self.layers is not None
            if self.layers.used(site.parent.name):  # else evicted since: fetched again
                return site
        lock = read_lock(code_dir)
        if lock is None:
            self._layers[digest] = None
            return None
        if self.layers is None:
            raise BundleError("this node does not run functions with dependencies")
        site = await self.layers.ensure(lock)
        self._layers[digest] = site
        return site

    def mounted_layers(self) -> set[str]:
        """The layers of functions that run or are warm here (mounted in their instances)."""
        in_use = {*self.admission.running_digests(), *_warm_digests(self.executor)}
        return {site.parent.name for d in in_use if (site := self._layers.get(d)) is not None}

    async def _spec(self, digest: str, header: BundleHeader, code_dir: Path) -> FunctionSpec:
        manifest = header.manifest
        if manifest.egress and getattr(self.executor, "egress", None) is None:
            # Not here, but maybe on a node whose volunteer lends network: the caller moves on.
            hosts = ", ".join(manifest.egress)[:200]
            raise Busy(f"{manifest.name} reaches the network ({hosts}); this node lends none")
        return FunctionSpec(
            digest=digest,
            code_dir=code_dir,
            deps_dir=await self._layer(digest, code_dir),
            handler=manifest.handler,
            memory_mb=manifest.memory_mb,
            timeout_s=manifest.timeout_s,
            cpus=self.cpus_per_instance,
            concurrency=manifest.concurrency,
            egress=manifest.egress,
        )

    async def _run(self, spec: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        """The executor's result, with its exceptions turned into failed results (usage as far as known)."""
        try:
            return await self.executor.invoke(spec, payload, timeout_s=timeout_s)
        except InvokeTimeout as exc:
            return _failure(
                ERROR_TIMEOUT, f"function ran past its {timeout_s:g} s timeout and was killed: {exc}"
            )
        except MemoryExceeded as exc:
            return _failure(
                ERROR_MEMORY,
                f"function exceeded its {spec.memory_mb} MB memory limit: {exc}",
                peak_memory_bytes=spec.memory_mb * 1024 * 1024,
            )
        except ExecutorError as exc:
            return _failure(ERROR_EXECUTOR, f"the node's executor failed: {exc}")

    def _receipt(
        self,
        request: InvokeRequest,
        lessee: bytes,
        result: ExecResult,
        wall_s: float,
        delegations: tuple[Delegation, ...],
    ) -> Receipt | None:
        """The signed receipt of an invocation that ran; None when the node itself failed (no charge)."""
        if result.error_type == ERROR_EXECUTOR:
            return None
        cpu_ms = max(0, round(result.cpu_s * 1000))
        peak_memory_mb = -(-max(0, result.peak_memory_bytes) // (1024 * 1024))
        wall_ms = max(0, round((result.duration_s or wall_s) * 1000))
        return signing.sign(
            Receipt(
                invocation_id=request.invocation_id,
                digest=request.digest,
                lessee_key=lessee,
                voucher_id=request.voucher.voucher_id if request.voucher is not None else "",
                ok=result.ok,
                cpu_ms=cpu_ms,
                peak_memory_mb=peak_memory_mb,
                wall_ms=wall_ms,
                price_micro=self._price(request, cpu_ms, peak_memory_mb, wall_ms),
                result_sha256=hashlib.sha256(result.output).digest() if result.ok else b"",
                issued_at=wall_time(),
                signer=b"",
                signature=b"",
                request_sha256=request_sha256(request),
                ticket=request.ticket,  # the lessee's word for the anchor (p2pfaas.tickets)
                delegations=delegations if request.ticket is not None else (),
            ),
            self.keys,
        )

    def _price(self, request: InvokeRequest, cpu_ms: int, peak_memory_mb: int, wall_ms: int) -> int:
        """The metered price, never over the cap the lessee's ticket set (the anchor pays no more)."""
        price = self.prices.charge_micro(cpu_ms=cpu_ms, peak_memory_mb=peak_memory_mb, wall_ms=wall_ms)
        return price if request.ticket is None else min(price, request.ticket.max_price_micro)

    def revoke(self, digest: str) -> None:
        """Its owner removed the function (`p2pfaas.node.revocations`): refuse it from now on (404),
        drop its bundle (no peer fetches it from here) and its idle warm instances."""
        if not self.bundles.revoke(digest):
            return
        self._layers.pop(digest, None)
        release = getattr(self.executor, "release", None)  # optional part of the executor contract
        if release is not None:
            release(digest)
        log.info("function bundle %s was removed by its owner: dropped", digest[:12])


def _warm_digests(executor: Executor) -> list[str]:
    warm = getattr(executor, "warm_digests", None)  # optional part of the executor contract (issue #4)
    return list(warm()) if warm is not None else []


def _failure(error_type: str, message: str, *, peak_memory_bytes: int = 0) -> ExecResult:
    return ExecResult(
        ok=False, error_type=error_type, error_message=message, peak_memory_bytes=peak_memory_bytes
    )

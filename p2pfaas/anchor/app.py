"""The anchor's HTTP API (aiohttp, MessagePack bodies).

Routes:
    GET  /v1/health                       -> Ack
    POST /v1/lessees      LesseeKeyRegistration -> Ack        (proof of key possession)
    POST /v1/bundles      Bundle          -> FunctionInfo      (signed by a registered lessee key; the
                                                                wheels its lock names uploaded first)
    GET  /v1/bundles/{digest}             -> Bundle
    GET  /v1/functions/{owner}            -> FunctionList      (the current version of each)
    GET  /v1/functions/{owner}/{name}[?version=V] -> FunctionInfo (the current version, or V)
    GET  /v1/functions/{owner}/{name}/versions -> FunctionList (every version, oldest first)
    POST /v1/functions/changes FunctionChange -> Ack            (signed by the owner: rollback, removal)
    GET  /v1/revoked?after=SEQ             -> RevokedBundles    (bundles of removed functions, in order)
    ... and the routes of `nodes_api.py` (nodes announce themselves, checked for reachability; the
    node list), `wheels.py` (dependency-layer wheels), `accounts_api.py` (sign up, log
    in, tokens, key claims), `ledger_api.py` (credits, vouchers, receipts, payouts) and
    `reputation.py` (replication votes, reputations).

Who may do what: account routes take a bearer token (`auth.py`); lessee keys and nodes prove
themselves by signatures. With `AnchorSettings.require_accounts` (production), a lessee key must be
bound to an account (`POST /v1/accounts/me/keys`) before it can deploy, and anonymous key
registration is refused; without it (devnet, tests) any key may register itself, as before.

Public by design, with no caller check: health, the node list, function names and bundles (nodes
fetch bundles by digest; a bundle is code its owner ships to strangers' machines anyway) and nodes'
reputations. Everything else is either a token's own rows or a signature's own key.

The anchor keeps no state of its own: everything lives in the database behind the stores, so
several anchors can serve behind one load balancer. The ledger (issue #5) adds routes here; the DHT
bootstrap node (issue #3) starts beside this app.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import generate_latest

from p2pfaas import codec, signing
from p2pfaas.anchor import accounts_api, auth, forwarded, ledger_api, nodes_api, reputation, wheels
from p2pfaas.anchor.accounts import AccountStore, KeyKind
from p2pfaas.anchor.node_store import NodeStore
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.store import RegistryStore
from p2pfaas.anchor.wheels import WheelStore
from p2pfaas.bundle.lock import lock_in_tar
from p2pfaas.bundle.verify import verified_tar
from p2pfaas.clock import wall_time
from p2pfaas.db import Database
from p2pfaas.errors import LocalError, NotFound, Refused
from p2pfaas.identity import PublicKey
from p2pfaas.ledger.rounds import DEFAULT_QUIET_S
from p2pfaas.messages import (
    MAX_ARCHIVE_BYTES,
    Ack,
    Bundle,
    BundleHeader,
    FunctionChange,
    FunctionInfo,
    FunctionList,
    FunctionVersion,
    LesseeKeyRegistration,
    Observed,
    RevokedBundles,
)
from p2pfaas.metrics.catalog import AnchorMetrics
from p2pfaas.metrics.http import DEFAULT_ALLOW, Exposure, Network
from p2pfaas.relay import RelayHub
from p2pfaas.rpc import Forbidden, error_middleware, read_message, reply

CHANGE_SKEW_S = 300.0  # a function change (rollback, removal) signed longer ago (or ahead) is refused


_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class AnchorSettings:
    """How an anchor admits callers. The defaults suit a devnet; production sets `require_accounts`."""

    require_accounts: bool = False  # lessee keys must be bound to an account to register or deploy
    earnings_mature_s: float = ledger_api.DEFAULT_MATURE_AFTER_S  # payouts only of earnings this old
    channel_quiet_s: float = DEFAULT_QUIET_S  # a channel this quiet is paid the rest its lessee signed
    # A listed URL is dialled back again once its last check is this old: a node that lost its port
    # forward is refused (and moves to a relay) instead of staying listed where nobody reaches it.
    reachability_recheck_s: float = nodes_api.RECHECK_S
    allow_signup: bool = True  # anyone may sign up as a lessee or volunteer
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    # The URL clients reach this anchor by (key claims must name it); "" for http://HOST:PORT as
    # bound by `AnchorServer`. Behind a proxy or on 0.0.0.0, set it (`anchor serve --public-url`).
    public_url: str = ""
    tls_cert: str = ""  # PEM certificate (and chain) to serve HTTPS with; "" serves plain HTTP
    tls_key: str = ""
    metrics: bool = True  # GET /metrics (p2pfaas.metrics); `anchor serve --no-metrics` turns it off
    metrics_allow: tuple[Network, ...] = DEFAULT_ALLOW  # who may scrape it (`--metrics-allow`)
    # Reverse proxies whose X-Forwarded-For is believed (`--trusted-proxy`, anchor/forwarded.py).
    trusted_proxies: tuple[Network, ...] = ()


@dataclass
class AnchorApi:
    """Request handlers over a `RegistryStore`. Driven by aiohttp; holds no state of its own."""

    store: RegistryStore
    accounts: AccountStore
    settings: AnchorSettings
    wheels: WheelStore

    async def health(self, request: web.Request) -> web.Response:
        return reply(Ack("anchor ok"))

    async def whoami(self, request: web.Request) -> web.Response:
        """The caller's address as this anchor sees it (STUN's question, over HTTP)."""
        return reply(Observed(address=request.remote or ""))

    async def register_lessee(self, request: web.Request) -> web.Response:
        msg = await read_message(request, LesseeKeyRegistration)
        key = signing.verify(msg)
        if self.settings.require_accounts and await self.accounts.key_owner(key.key_id) is None:
            # The registration names no account, so it cannot prove whose key this is: claim it instead.
            raise Forbidden(
                f"this anchor needs lessee key {key.key_id[:12]} bound to an account first: "
                "`p2pfaas account claim-key` (POST /v1/accounts/me/keys)"
            )
        await self.store.register_lessee_key(key.raw, label=msg.label, now=wall_time())
        return reply(Ack(key.key_id))

    async def put_bundle(self, request: web.Request) -> web.Response:
        upload = await read_message(request, Bundle)
        header = upload.header
        owner = PublicKey(header.signer)
        await self.may_deploy(owner)
        lock = lock_in_tar(verified_tar(upload))  # verifies the bundle; BundleError -> 400
        missing = [] if lock is None else await self.wheels.missing(lock)
        if missing:
            raise Refused(
                "upload the wheels of the bundle's lock first (PUT /v1/wheels/{sha256}): "
                + ", ".join(w.filename for w in missing[:10]),
                status=409,
            )
        m = header.manifest
        await self.store.put_bundle(
            digest=header.digest,
            owner_key_id=owner.key_id,
            name=m.name,
            version=m.version,
            runtime=m.runtime,
            handler=m.handler,
            memory_mb=m.memory_mb,
            timeout_s=m.timeout_s,
            deterministic=m.deterministic,
            signed_manifest=codec.encode(header),
            archive=upload.archive,
            now=wall_time(),
        )
        return reply(FunctionInfo(owner_key_id=owner.key_id, name=m.name, header=header))

    async def may_deploy(self, key: PublicKey) -> None:
        """Raise Forbidden unless `key` may deploy (and upload wheels): registered, and bound to a
        lessee account where the anchor requires accounts."""
        if await self.store.lessee_key(key.key_id) is None:
            raise Forbidden(f"lessee key {key.key_id} is not registered; register it first")
        if self.settings.require_accounts:
            bound = await self.accounts.key_owner(key.key_id)
            if bound is None or bound[1] != KeyKind.LESSEE:
                raise Forbidden(f"lessee key {key.key_id[:12]} is not bound to a lessee account")

    async def get_bundle(self, request: web.Request) -> web.Response:
        digest = _path_param(request, "digest", _HEX64)
        if await self.store.is_revoked(digest):
            raise NotFound(f"bundle {digest} was removed with its function by its owner")
        header_bytes = await self.store.bundle_header(digest)
        archive = await self.store.bundle_archive(digest)
        if header_bytes is None or archive is None:
            raise NotFound(f"no bundle with digest {digest}")
        return reply(Bundle(header=_decode_header(header_bytes), archive=archive))

    async def get_function(self, request: web.Request) -> web.Response:
        owner = _path_param(request, "owner", _HEX40)
        name = request.match_info["name"]
        version = request.query.get("version", "")[:64]  # `NAME@VERSION`: that version, not the current
        digest = await self.store.resolve_function(owner, name, version)
        if digest and await self.store.is_revoked(digest):  # `NAME@VERSION` of a removed function
            digest = None
        header_bytes = await self.store.bundle_header(digest) if digest else None
        if header_bytes is None:
            what = f"{name[:64]!r} at version {version!r}" if version else f"{name[:64]!r}"
            raise NotFound(f"lessee {owner[:12]}… has no function named {what}")
        return reply(FunctionInfo(owner_key_id=owner, name=name, header=_decode_header(header_bytes)))

    async def list_functions(self, request: web.Request) -> web.Response:
        """A lessee's functions at their current versions (bundles are public: so is this list)."""
        owner = _path_param(request, "owner", _HEX40)
        rows = await self.store.list_functions(owner)
        listed = (FunctionVersion(r.name, r.version, r.digest, r.runtime, r.updated_at, True) for r in rows)
        return reply(FunctionList(tuple(listed)))

    async def function_versions(self, request: web.Request) -> web.Response:
        owner = _path_param(request, "owner", _HEX40)
        name = request.match_info["name"]
        rows = await self.store.function_versions(owner, name)
        if not rows:
            raise NotFound(f"lessee {owner[:12]}… has no function named {name[:64]!r}")
        current = await self.store.resolve_function(owner, name)
        listed = (
            FunctionVersion(r.name, r.version, r.digest, r.runtime, r.updated_at, r.digest == current)
            for r in rows
        )
        return reply(FunctionList(tuple(listed)))

    async def change_function(self, request: web.Request) -> web.Response:
        """The owner's signed rollback (or roll forward, or removal) of one of its functions."""
        msg = await read_message(request, FunctionChange)
        owner = signing.verify(msg)
        now = wall_time()
        if abs(now - msg.issued_at) > CHANGE_SKEW_S:
            raise LocalError(f"the change was signed {now - msg.issued_at:.0f} s from now: sign a fresh one")
        digest = await self.store.change_function(
            owner.key_id, msg.name, msg.version, issued_at=msg.issued_at, now=now
        )
        return reply(Ack(f"{msg.name} now runs {digest[:16]}" if digest else f"{msg.name} removed"))

    async def revoked(self, request: web.Request) -> web.Response:
        """The bundles revoked after `?after=SEQ` (1,000 at most: ask again after the last)."""
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise LocalError("after must be a whole number") from None
        rows = await self.store.revoked_after(max(after, 0))
        return reply(RevokedBundles(tuple(seq for seq, _ in rows), tuple(digest for _, digest in rows)))


def _path_param(request: web.Request, name: str, pattern: re.Pattern[str]) -> str:
    value = request.match_info[name]
    if not pattern.fullmatch(value):
        raise NotFound(f"{name} {value[:80]!r} is not a valid {name}")
    return value


def _decode_header(data: bytes) -> BundleHeader:
    # The header was verified before it was stored; decoding still checks its shape.
    return codec.decode_as(BundleHeader, data)


RELAY_HUB: web.AppKey[RelayHub] = web.AppKey("p2pfaas.relay_hub", RelayHub)
NODES_API: web.AppKey[nodes_api.NodesApi] = web.AppKey("p2pfaas.nodes_api", nodes_api.NodesApi)


def set_public_url(app: web.Application, url: str) -> None:
    """Tell the routes of `app` the anchor's public URL: claims' audience, the relay's base, the relays
    nodes may name."""
    accounts_api.set_public_url(app, url)
    app[RELAY_HUB].base_url = app[NODES_API].public_url = url.rstrip("/")


def make_app(db: Database, *, settings: AnchorSettings | None = None) -> web.Application:
    """The anchor's aiohttp application. The caller owns `db` and closes it after the app."""
    settings = settings or AnchorSettings()
    accounts = AccountStore(db)
    api = AnchorApi(RegistryStore(db), accounts, settings, WheelStore(db))
    metrics = AnchorMetrics() if settings.metrics else None
    exposure = (
        None
        if metrics is None
        else Exposure(metrics.http, lambda: generate_latest(metrics.registry), settings.metrics_allow)
    )
    middlewares = [*(exposure.middlewares() if exposure else ()), error_middleware]
    if settings.trusted_proxies:  # first: every handler, limit and check sees the client's address
        middlewares.insert(0, forwarded.forwarded_middleware(settings.trusted_proxies))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_ARCHIVE_BYTES + 64 * 1024)
    app[auth.ACCOUNTS] = accounts
    accounts_api.add_routes(
        app,
        accounts_api.AccountsApi(
            accounts,
            hasher=settings.hasher,
            allow_signup=settings.allow_signup,
            public_url=settings.public_url,
        ),
    )
    app.add_routes(
        [
            web.get("/v1/health", api.health),
            web.get("/v1/whoami", api.whoami),
            web.post("/v1/lessees", api.register_lessee),
            web.post("/v1/bundles", api.put_bundle),
            web.get("/v1/bundles/{digest}", api.get_bundle),
            web.get("/v1/functions/{owner}", api.list_functions),
            web.get("/v1/functions/{owner}/{name}", api.get_function),
            web.get("/v1/functions/{owner}/{name}/versions", api.function_versions),
            web.post("/v1/functions/changes", api.change_function),
            web.get("/v1/revoked", api.revoked),
        ]
    )

    nodes = nodes_api.NodesApi(
        NodeStore(db), accounts, settings.require_accounts, recheck_s=settings.reachability_recheck_s
    )
    nodes_api.add_routes(app, nodes)
    wheels.add_routes(app, api.wheels, may_upload=api.may_deploy)
    # Nodes behind NAT may dial out to the anchor and be reached through it (p2pfaas/relay).
    hub = RelayHub()
    app[RELAY_HUB], app[NODES_API] = hub, nodes
    app.add_routes(hub.routes())

    async def close_links(app: web.Application) -> None:  # before the server waits for open handlers
        await hub.aclose()

    app.on_shutdown.append(close_links)
    ledger_api.setup(
        app, db, mature_after_s=settings.earnings_mature_s, channel_quiet_s=settings.channel_quiet_s
    )  # grants, top-ups, vouchers, receipts, balances, payouts (issue #5)
    reputation.add_routes(app, db)  # replication votes, advert lies, reputations (issue #5, trust)
    if metrics is not None and exposure is not None:  # GET /metrics (p2pfaas.metrics, docs/metrics.md)
        ledger = app[ledger_api.LEDGER]
        ledger.observe_lag = metrics.settlement_lag.observe
        metrics.set_readings(functools.partial(_readings, db, ledger))
        app.add_routes([exposure.route()])
    return app


def _readings(db: Database, ledger: ledger_api.LedgerApi) -> dict[str, float | dict[str, float]]:
    """The figures the anchor's /metrics reads when scraped (`metrics.catalog.ANCHOR_READINGS`)."""
    figures: dict[str, float | dict[str, float]] = {
        "receipts_settled": dict(ledger.settled),
        "settled_micro": ledger.settled_micro,
        "channel_rounds": ledger.rounds,
    }
    pool = db.engine.pool
    checked_out, checked_in = getattr(pool, "checkedout", None), getattr(pool, "checkedin", None)
    if callable(checked_out) and callable(checked_in):  # a QueuePool (MariaDB); SQLite's keeps none
        figures["db_connections"] = {"in_use": checked_out(), "idle": checked_in()}
    return figures

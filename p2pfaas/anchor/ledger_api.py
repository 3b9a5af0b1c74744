"""The anchor's ledger routes: credits in, vouchers, receipt batches, balances and payouts.

Routes (MessagePack bodies; token scopes from `p2pfaas.anchor.tokens.Scope`):
    GET  /v1/anchor-key                             -> AnchorKey     (anyone: nodes verify vouchers with it)
    POST /v1/ledger/grants      GrantRequest        -> TransferDone  (operator)
    POST /v1/ledger/topups      TopUpRequest        -> TransferDone  (credits:topup; a provider may ask more)
    GET  /v1/ledger/balance                         -> Balances      (account:read; the caller's accounts)
    POST /v1/vouchers           VoucherRequest      -> Voucher       (credits:spend; own lessee key only)
    GET  /v1/vouchers/{id}                          -> VoucherInfo   (account:read; the caller's own)
    POST /v1/receipts           ReceiptBatch        -> BatchResult   (signed by the node key; no token;
                                                                      each receipt needs its lessee's ticket)
    POST /v1/channels           ChannelTickets      -> Ack           (anyone: each ticket signed by its
                                                                      voucher's lessee; tickets the lessee
                                                                      could not hand the node itself)
    ... and the payouts (`payouts_api.py`), added with these.

One account never reads or spends another's: every handler resolves accounts from the caller's
token and checks ownership before touching a row. `setup(app, db)` adds the routes and a
background task that returns expired vouchers' unspent budgets.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas import signing
from p2pfaas.anchor import payouts_api
from p2pfaas.anchor.accounts import normalize_username
from p2pfaas.anchor.auth import Principal, Scope, require
from p2pfaas.anchor.trust_store import replica_gate
from p2pfaas.clock import wall_time
from p2pfaas.db import Database
from p2pfaas.db.schema import key_owners, users
from p2pfaas.errors import LocalError, NotFound, SignatureError, StorageError
from p2pfaas.identity import KeyPair, PublicKey
from p2pfaas.ledger import usage as usage_lines
from p2pfaas.ledger.channels import record_tickets
from p2pfaas.ledger.earnings import claw_back
from p2pfaas.ledger.issuer import VoucherIssuer, load_anchor_keys
from p2pfaas.ledger.payments import Payments, TopUp
from p2pfaas.ledger.policy import FeePolicy, Refusal
from p2pfaas.ledger.postings import AccountRow, InsufficientFunds
from p2pfaas.ledger.rounds import DEFAULT_QUIET_S, settle_rests
from p2pfaas.ledger.settlement import Settler
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.ledger.usage import earnings, usage
from p2pfaas.ledger.wire import (
    AccountBalance,
    AnchorKey,
    Balances,
    BatchResult,
    EarningsReport,
    GrantRequest,
    RefusedReceipt,
    TopUpRequest,
    TransferDone,
    UsageLine,
    UsageReport,
    VoucherInfo,
    VoucherRequest,
)
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import Ack, ChannelTickets, ReceiptBatch
from p2pfaas.rpc import Forbidden, read_message, reply

__all__ = ["LEDGER", "LedgerApi", "setup"]

log = logging.getLogger(__name__)

RELEASE_EVERY_S = 30.0
DEFAULT_MATURE_AFTER_S = 3 * 86400.0  # three days: time for replication votes and lie reports
RELEASE_GRACE_S = 120.0  # receipts for work done just before expiry still arrive and are paid
RELEASE_PAGE = 100  # vouchers closed per transaction


@dataclass
class LedgerApi:
    """Handlers over the ledger. Holds only what every anchor on the database shares (the key)."""

    db: Database
    store: LedgerStore
    settler: Settler
    payments: Payments
    # A payment channel this long quiet has the rest of what its lessee signed paid (`rounds`).
    channel_quiet_s: float = DEFAULT_QUIET_S
    _keys: KeyPair | None = None
    _keys_lock: asyncio.Lock | None = None
    # For the anchor's metrics (`p2pfaas.metrics`): receipts settled by result, the node price paid
    # (receipts and rests), channel rounds run, and each paid receipt's lag from its signing.
    settled: dict[str, int] = field(
        default_factory=lambda: {"paid": 0, "duplicate": 0, "refused": 0, "unsigned": 0}
    )
    settled_micro: int = 0
    rounds: int = 0
    observe_lag: Callable[[float], None] | None = None
    payouts: payouts_api.PayoutsApi = field(init=False)  # its routes, set up with these

    async def keys(self) -> KeyPair:
        if self._keys is None:
            self._keys_lock = self._keys_lock or asyncio.Lock()
            async with self._keys_lock:
                if self._keys is None:
                    self._keys = await load_anchor_keys(self.db, now=wall_time())
        return self._keys

    # --- anyone ---------------------------------------------------------------------------------

    async def anchor_key(self, request: web.Request) -> web.Response:
        return reply(AnchorKey((await self.keys()).public.raw, self.settler.fees.fee_ppm))

    # --- credits in -------------------------------------------------------------------------------

    async def grant(self, request: web.Request) -> web.Response:
        await require(request, Scope.OPERATOR)
        msg = await read_message(request, GrantRequest)
        account_id = await self._account_of_username(msg.username)
        done = await self.store.grant(
            ref=msg.ref, account_id=account_id, amount_micro=msg.amount_micro, memo=msg.memo, now=wall_time()
        )
        return reply(await self._transfer_done(account_id, repeat=done is None))

    async def top_up(self, request: web.Request) -> web.Response:
        caller = await require(request, Scope.TOPUP)
        msg = await read_message(request, TopUpRequest)
        if msg.username and msg.username != caller.username and not caller.is_operator:
            raise Forbidden("only an operator may pay credits into another user's account")
        account_id = await self._account_of_username(msg.username) if msg.username else caller.account_id
        topup = TopUp(account_id, msg.amount_micro, msg.payment_ref, requested_by_operator=caller.is_operator)
        done = await self.payments.top_up(msg.provider, topup, now=wall_time())
        return reply(await self._transfer_done(account_id, repeat=done is None))

    async def balance(self, request: web.Request) -> web.Response:
        caller = await require(request, Scope.ACCOUNT_READ)
        rows = await self._accounts_of(caller)
        return reply(Balances(tuple(_balance(row) for row in rows)))

    async def usage(self, request: web.Request) -> web.Response:
        """The caller's bill (`p2pfaas.ledger.usage`): `?since=UNIX_TIME&by=function|day`."""
        caller = await require(request, Scope.ACCOUNT_READ)
        since = _since(request)
        bill = await usage(self.db, caller.account_id, since=since, by=request.query.get("by", "function"))
        return reply(
            UsageReport(
                _wire_lines(bill.lines),
                bill.bought_micro,
                bill.spent_micro,
                bill.returned_micro,
                bill.held_micro,
            )
        )

    async def earnings(self, request: web.Request) -> web.Response:
        """What the caller's nodes were paid (`p2pfaas.ledger.usage.earnings`): `?since=&by=node|day`."""
        caller = await require(request, Scope.ACCOUNT_READ)
        since = _since(request)
        lines = await earnings(self.db, caller.user_id, since=since, by=request.query.get("by", "node"))
        return reply(EarningsReport(_wire_lines(lines)))

    # --- vouchers ---------------------------------------------------------------------------------

    async def request_voucher(self, request: web.Request) -> web.Response:
        caller = await require(request, Scope.SPEND)
        msg = await read_message(request, VoucherRequest)
        try:
            key = PublicKey(msg.lessee_key)
        except SignatureError as error:
            raise LocalError(f"lessee key: {error}") from None
        owner = await self._key_owner(key.key_id)
        if owner != (caller.user_id, "lessee"):
            raise Forbidden(f"lessee key {key.key_id[:12]} is not bound to your account; bind it first")
        issuer = VoucherIssuer(self.store, await self.keys())
        voucher = await issuer.issue(
            user_id=caller.user_id,
            lessee_account_id=caller.account_id,
            lessee_key=key.raw,
            budget_micro=msg.budget_micro,
            ttl_s=msg.ttl_s,
            request_id=msg.request_id,
            now=wall_time(),
        )
        return reply(voucher)

    async def voucher_info(self, request: web.Request) -> web.Response:
        caller = await require(request, Scope.ACCOUNT_READ)
        row = await self.store.voucher(request.match_info["voucher_id"][:64])
        if row is None or (row.owner_user_id != caller.user_id and not caller.is_operator):
            raise NotFound("no such voucher among yours")  # the same answer: ids leak nothing
        return reply(
            VoucherInfo(row.voucher_id, row.budget_micro, row.remaining_micro, row.expires_at, row.state)
        )

    # --- settlement -------------------------------------------------------------------------------

    async def receipts(self, request: web.Request) -> web.Response:
        batch = await read_message(request, ReceiptBatch)
        # The batch's signature says which node sends it; each receipt must still verify on its
        # own (`Settler.settle_receipts`): what is paid is exactly what the node signed for the
        # lessee, not what some batch signature happens to cover.
        node = signing.verify(batch)
        for receipt in batch.receipts:
            if receipt.signer != batch.signer:
                raise SignatureError(
                    f"receipt {receipt.invocation_id[:64]!r} is not signed by the batch's node"
                )
        done = await self.settler.settle_receipts(
            node.key_id, batch.receipts, now=wall_time(), channel_tickets=batch.channels
        )
        duplicate = tuple(i for i, why in done.refused.items() if why is Refusal.DUPLICATE)
        unsigned = tuple(i for i, why in done.refused.items() if why is Refusal.UNSIGNED)
        refused = tuple(
            RefusedReceipt(i, str(why))
            for i, why in done.refused.items()
            if why not in (Refusal.DUPLICATE, Refusal.UNSIGNED)
        )
        self._count(batch, done.paid, done.paid_micro, len(duplicate), len(unsigned), len(refused))
        return reply(BatchResult(paid=done.paid, duplicate=duplicate, refused=refused, unsigned=unsigned))

    async def channels(self, request: web.Request) -> web.Response:
        """A lessee's channel tickets for nodes it could not reach: the nodes' receipts are paid
        within them (`record_tickets`) although the tickets never reached the nodes."""
        offer = await read_message(request, ChannelTickets)
        raised = await record_tickets(self.db, offer.tickets, now=wall_time())
        return reply(Ack(f"raised {raised} of {len(offer.tickets)} channels"))

    # --- payouts ----------------------------------------------------------------------------------

    async def claw_back(self, invocation_id: str, node_id: str, *, excess_micro: int, why: str) -> int:
        """Give the lessee back `excess_micro` of what node `node_id` was paid for `invocation_id`
        (what a proven lie overcharged); what moved. Earnings already paid out cannot be reached:
        they are logged."""
        now = wall_time()

        async def work(connection: AsyncConnection) -> int:
            return await claw_back(
                connection, invocation_id, node_id=node_id, excess_micro=excess_micro, why=why, now=now
            )

        try:
            return await self.db.run(work, what=f"claw back {invocation_id[:64]}")
        except InsufficientFunds as error:
            log.error("cannot claw back %s from node %s: %s", invocation_id[:64], node_id[:12], error)
            return 0

    # --- helpers ----------------------------------------------------------------------------------

    async def _accounts_of(self, caller: Principal) -> list[AccountRow]:
        """The caller's own account first, then every other it owns (vouchers' holds, nodes')."""
        return await self.store.own_accounts(caller.account_id, caller.user_id)

    async def _transfer_done(self, account_id: int, *, repeat: bool) -> TransferDone:
        return TransferDone(account_id, (await self.store.account(account_id)).balance_micro, repeat)

    async def _account_of_username(self, username: str) -> int:
        async def work(connection: AsyncConnection) -> int | None:
            query = sa.select(users.c.account_id).where(users.c.username == normalize_username(username))
            return await connection.scalar(query)

        account_id = await self.db.run(work, what="find user", write=False)
        if account_id is None:
            raise NotFound(f"no user {username[:64]!r}")
        return int(account_id)

    async def _key_owner(self, key_id: str) -> tuple[int, str] | None:
        async def work(connection: AsyncConnection) -> tuple[int, str] | None:
            query = sa.select(key_owners.c.user_id, key_owners.c.kind).where(key_owners.c.key_id == key_id)
            row = (await connection.execute(query)).first()
            return None if row is None else (int(row.user_id), str(row.kind))

        return await self.db.run(work, what="find key owner", write=False)

    def _count(
        self, batch: ReceiptBatch, paid: Sequence[str], paid_micro: int, duplicate: int, unsigned: int,
        refused: int,
    ) -> None:  # fmt: skip
        self.settled["paid"] += len(paid)
        self.settled["duplicate"] += duplicate
        self.settled["unsigned"] += unsigned
        self.settled["refused"] += refused
        self.settled_micro += paid_micro
        if self.observe_lag is not None and paid:
            now, ids = wall_time(), set(paid)
            for receipt in batch.receipts:
                if receipt.invocation_id in ids:
                    self.observe_lag(max(0.0, now - receipt.issued_at))

    async def release_due(self) -> int:
        """Pay the channels that are due the rest their lessees signed (`rounds.settle_rests`),
        then return every voucher's unspent budget that is due now; how many vouchers were closed."""
        try:
            self.settled_micro += await settle_rests(
                self.settler, now=wall_time(), quiet_s=self.channel_quiet_s
            )
            self.rounds += 1
        except StorageError as error:  # one bad round must not keep every voucher from its release
            log.warning("a channel round failed; the release goes on: %s", error)
        closed = 0
        while True:
            page = await self.store.release_expired(
                now=wall_time(), grace_s=RELEASE_GRACE_S, limit=RELEASE_PAGE
            )
            closed += len(page)
            if len(page) < RELEASE_PAGE:
                return closed

    async def release_forever(self) -> None:
        """`release_due` every round (`RELEASE_EVERY_S`, or half the channels' quiet time when that
        is shorter); a failed round (the database away) is logged and retried."""
        every_s = min(RELEASE_EVERY_S, max(0.5, self.channel_quiet_s / 2))
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.release_due()
            except StorageError as error:
                log.warning("a settlement round failed; will retry: %s", error)


def _balance(row: AccountRow) -> AccountBalance:
    return AccountBalance(row.account_id, row.name, row.kind, row.balance_micro)


LEDGER = web.AppKey("p2pfaas.ledger", LedgerApi)


def _wire_lines(lines: Sequence[usage_lines.UsageLine]) -> tuple[UsageLine, ...]:
    return tuple(
        UsageLine(line.key[:272], line.calls, line.cpu_ms, line.mb_ms, line.charged_micro) for line in lines
    )


def _since(request: web.Request) -> float:
    """The `since` query parameter: a Unix time in seconds, 0 when absent."""
    try:
        since = float(request.query.get("since", "0"))
    except ValueError:
        raise LocalError("since must be a Unix time in seconds") from None
    if not math.isfinite(since) or since < 0:
        raise LocalError("since must be a Unix time in seconds")
    return since


def setup(
    app: web.Application,
    db: Database,
    *,
    fees: FeePolicy | None = None,
    mature_after_s: float = DEFAULT_MATURE_AFTER_S,
    channel_quiet_s: float = DEFAULT_QUIET_S,
) -> LedgerApi:
    """Add the ledger's routes to the anchor `app`, and its voucher-release task to the app's lifetime."""
    store = LedgerStore(db)
    settler = Settler(db, fees=fees, gate=replica_gate)  # replicas are paid once their vote says so
    api = LedgerApi(db, store, settler, Payments(store), channel_quiet_s=channel_quiet_s)
    app[LEDGER] = api
    app.add_routes(
        [
            web.get("/v1/anchor-key", api.anchor_key),
            web.post("/v1/ledger/grants", api.grant),
            web.post("/v1/ledger/topups", api.top_up),
            web.get("/v1/ledger/balance", api.balance),
            web.get("/v1/ledger/usage", api.usage),
            web.get("/v1/ledger/earnings", api.earnings),
            web.post("/v1/vouchers", api.request_voucher),
            web.get("/v1/vouchers/{voucher_id}", api.voucher_info),
            web.post("/v1/receipts", api.receipts),
            web.post("/v1/channels", api.channels),
        ]
    )

    async def releaser(app: web.Application) -> AsyncIterator[None]:
        tasks = TaskSet()
        tasks.spawn(api.release_forever(), name="settlement rounds")
        yield
        await tasks.cancel()

    app.cleanup_ctx.append(releaser)
    # Earnings may be paid out once they have stood `mature_after_s`: until then a proven lie about
    # them is clawed back from them (`claw_back`).
    api.payouts = payouts_api.PayoutsApi(store, mature_after_s=mature_after_s)
    payouts_api.add_routes(app, api.payouts)
    return api

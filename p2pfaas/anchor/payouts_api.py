"""The anchor's payout routes: a volunteer asks for matured earnings to be paid out, and the operator
records what the payment provider said.

Routes (MessagePack bodies; token scopes from `p2pfaas.anchor.tokens.Scope`):
    POST /v1/payouts            PayoutRequest       -> PayoutInfo    (payouts:write; own accounts only)
    GET  /v1/payouts/{id}                           -> PayoutInfo    (the owner, or an operator)
    POST /v1/payouts/{id}/state PayoutUpdate        -> PayoutInfo    (operator: the provider said paid/failed)

A payout id is the caller's own (prefixed with the user's id, so no two users' ids collide); asking
twice for one id pays once. Only earnings older than `mature_after_s` may leave: until then a proven
lie about them is clawed back from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from p2pfaas.anchor.auth import Principal, Scope, require
from p2pfaas.clock import wall_time
from p2pfaas.errors import LocalError, NotFound
from p2pfaas.ledger.policy import PayoutState
from p2pfaas.ledger.store import LedgerStore, PayoutRow
from p2pfaas.ledger.wire import PayoutInfo, PayoutRequest, PayoutUpdate
from p2pfaas.rpc import Forbidden, read_message, reply


@dataclass
class PayoutsApi:
    store: LedgerStore
    mature_after_s: float

    async def request_payout(self, request: web.Request) -> web.Response:
        caller = await require(request, Scope.PAYOUT)
        msg = await read_message(request, PayoutRequest)
        account_id = msg.account_id or caller.account_id
        if account_id not in {
            row.account_id for row in await self.store.own_accounts(caller.account_id, caller.user_id)
        }:
            raise Forbidden(f"account {account_id} is not yours")
        payout_id = f"{caller.user_id}:{msg.payout_id}"  # a user's ids never collide with another's
        await self.store.request_payout(
            payout_id=payout_id,
            account_id=account_id,
            amount_micro=msg.amount_micro,
            destination=msg.destination,
            now=wall_time(),
            mature_after_s=self.mature_after_s,
        )
        return reply(_payout(await self.store.payout(payout_id)))

    async def payout_info(self, request: web.Request) -> web.Response:
        caller = await require(request, Scope.ACCOUNT_READ)
        row = await self._own_payout(caller, request.match_info["payout_id"])
        return reply(_payout(row))

    async def update_payout(self, request: web.Request) -> web.Response:
        await require(request, Scope.OPERATOR)
        msg = await read_message(request, PayoutUpdate)
        try:
            state = PayoutState(msg.state)
        except ValueError:
            raise LocalError(f"payout state must be 'paid' or 'failed', not {msg.state!r}") from None
        row = await self.store.settle_payout(request.match_info["payout_id"][:64], state, now=wall_time())
        return reply(_payout(row))

    async def _own_payout(self, caller: Principal, payout_id: str) -> PayoutRow:
        try:
            row = await self.store.payout(payout_id[:64])
        except NotFound:
            row = None
        owned = row is not None and row.account_id in {
            a.account_id for a in await self.store.own_accounts(caller.account_id, caller.user_id)
        }
        if row is None or not (owned or caller.is_operator):
            raise NotFound("no such payout among yours")
        return row


def _payout(row: PayoutRow) -> PayoutInfo:
    return PayoutInfo(row.payout_id, row.account_id, row.amount_micro, row.state, row.destination)


def add_routes(app: web.Application, api: PayoutsApi) -> None:
    app.add_routes(
        [
            web.post("/v1/payouts", api.request_payout),
            web.get("/v1/payouts/{payout_id}", api.payout_info),
            web.post("/v1/payouts/{payout_id}/state", api.update_payout),
        ]
    )

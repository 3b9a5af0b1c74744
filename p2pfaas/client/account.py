"""The lessee's and volunteer's side of the anchor's accounts API.

`AccountClient` signs up, logs in, mints and revokes API tokens, shows who a token belongs to,
and binds keys: a lessee key (to deploy and pay with) or a node's key (so the node's earnings
reach the volunteer), each by a claim the key itself signs. It also speaks the ledger's routes
for the same caller (`p2pfaas/anchor/ledger_api.py`): balances, vouchers, payouts, and an
operator's grants. The token is held in memory only; the CLI keeps it in a file readable by its
owner alone (`p2pfaas/cli/account.py`).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar
from urllib.parse import quote

import aiohttp

from p2pfaas import codec, rpc, signing
from p2pfaas.anchor.wire import (
    AccountProfile,
    KeyClaim,
    KeyInfo,
    LoginRequest,
    SignupRequest,
    TokenIssued,
    TokenList,
    TokenRequest,
)
from p2pfaas.clock import wall_time
from p2pfaas.errors import LocalError
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.wire import (
    Balances,
    EarningsReport,
    GrantRequest,
    PayoutInfo,
    PayoutRequest,
    PayoutUpdate,
    TopUpRequest,
    TransferDone,
    UsageReport,
    VoucherRequest,
)
from p2pfaas.messages import Ack, Voucher
from p2pfaas.trust.wire import ReputationList

__all__ = ["AccountClient"]

M = TypeVar("M", bound=codec.Message)


@dataclass
class AccountClient:
    """`async with AccountClient(anchor_url, token=...) as accounts:`; `token` may come from `login`."""

    anchor_url: str
    token: str | None = None
    request_timeout_s: float = 30.0
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    async def __aenter__(self) -> AccountClient:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def auth_headers(self) -> dict[str, str]:
        if self.token is None:
            raise LocalError("no API token: log in (`p2pfaas account login`) or pass one")
        return {"Authorization": f"Bearer {self.token}"}

    async def _call(
        self, method: str, path: str, expect: type[M], msg: codec.Message | None = None, *, auth: bool = True
    ) -> M:
        if self._session is None:
            raise LocalError("use the client as `async with AccountClient(...) as accounts:`")
        return await rpc.call(
            self._session,
            method,
            f"{self.anchor_url}{path}",
            expect,
            msg,
            timeout_s=self.request_timeout_s,
            headers=self.auth_headers() if auth else None,
        )

    # --- sessions -------------------------------------------------------------------------------

    async def signup(self, username: str, password: str, *, role: str = "lessee") -> TokenIssued:
        """A new account; the answer's token (a session) is also kept for the calls that follow."""
        issued = await self._call(
            "POST", "/v1/accounts", TokenIssued, SignupRequest(username, password, role), auth=False
        )
        self.token = issued.token
        return issued

    async def login(
        self, username: str, password: str, *, scopes: tuple[str, ...] = (), ttl_s: float = 0.0
    ) -> TokenIssued:
        issued = await self._call(
            "POST", "/v1/sessions", TokenIssued, LoginRequest(username, password, scopes, ttl_s), auth=False
        )
        self.token = issued.token
        return issued

    async def me(self) -> AccountProfile:
        return await self._call("GET", "/v1/accounts/me", AccountProfile)

    # --- tokens ---------------------------------------------------------------------------------

    async def create_token(self, *, scopes: tuple[str, ...] = (), ttl_s: float = 0.0) -> TokenIssued:
        """A new API token with (a subset of) this token's scopes; this client keeps its own token."""
        return await self._call("POST", "/v1/tokens", TokenIssued, TokenRequest(scopes, ttl_s))

    async def tokens(self) -> TokenList:
        return await self._call("GET", "/v1/tokens", TokenList)

    async def revoke(self, token_id: str) -> None:
        await self._call("DELETE", f"/v1/tokens/{token_id}", Ack)

    # --- keys and nodes -------------------------------------------------------------------------

    async def claim_key(
        self, keys: KeyPair, *, kind: str, username: str | None = None, label: str = ""
    ) -> KeyInfo:
        """Bind `keys` (a lessee key, or a node's key with kind="node") to this token's account."""
        if username is None:
            username = (await self.me()).username
        claim = signing.sign(
            KeyClaim(
                kind=kind,
                username=username,
                audience=self.anchor_url,
                label=label,
                issued_at=wall_time(),
                signer=b"",
                signature=b"",
            ),
            keys,
        )
        return await self._call("POST", "/v1/accounts/me/keys", KeyInfo, claim)

    # --- the ledger, for this caller -------------------------------------------------------------

    async def balances(self) -> Balances:
        return await self._call("GET", "/v1/ledger/balance", Balances)

    async def usage(self, *, since: float = 0.0, by: str = "function") -> UsageReport:
        """This account's bill: calls, CPU, memory-time and credits by function or by UTC day."""
        query = urllib.parse.urlencode({"since": repr(since), "by": by})
        return await self._call("GET", f"/v1/ledger/usage?{query}", UsageReport)

    async def earnings(self, *, since: float = 0.0, by: str = "node") -> EarningsReport:
        """What this account's nodes were paid: calls, CPU, memory-time and credits by node or UTC day."""
        query = urllib.parse.urlencode({"since": repr(since), "by": by})
        return await self._call("GET", f"/v1/ledger/earnings?{query}", EarningsReport)

    async def voucher(self, keys: KeyPair, *, budget_micro: int, ttl_s: float, request_id: str) -> Voucher:
        """A spending voucher for lessee key `keys` (bound to this account); idempotent by `request_id`."""
        return await self._call(
            "POST", "/v1/vouchers", Voucher, VoucherRequest(keys.public.raw, budget_micro, ttl_s, request_id)
        )

    async def request_payout(
        self, payout_id: str, *, amount_micro: int, destination: str, account_id: int = 0
    ) -> PayoutInfo:
        """Ask for a payout: pending until an operator marks it paid or failed; idempotent by `payout_id`."""
        msg = PayoutRequest(payout_id, account_id, amount_micro, destination)
        return await self._call("POST", "/v1/payouts", PayoutInfo, msg)

    async def payout(self, payout_id: str) -> PayoutInfo:
        return await self._call("GET", f"/v1/payouts/{quote(payout_id, safe='')}", PayoutInfo)

    async def settle_payout(self, payout_id: str, state: str) -> PayoutInfo:
        """Operator: the payment provider says the payout was `paid` or has `failed`."""
        path = f"/v1/payouts/{quote(payout_id, safe='')}/state"
        return await self._call("POST", path, PayoutInfo, PayoutUpdate(state))

    async def grant(self, username: str, amount_micro: int, *, ref: str, memo: str = "") -> TransferDone:
        """Operator: give `username` credits (idempotent by `ref`)."""
        return await self._call(
            "POST", "/v1/ledger/grants", TransferDone, GrantRequest(username, amount_micro, ref, memo)
        )

    async def top_up(
        self, provider: str, amount_micro: int, *, payment_ref: str, username: str = ""
    ) -> TransferDone:
        msg = TopUpRequest(provider, username, amount_micro, payment_ref)
        return await self._call("POST", "/v1/ledger/topups", TransferDone, msg)

    # --- trust ------------------------------------------------------------------------------------

    async def reputations(self, node_ids: list[str]) -> ReputationList:
        """The anchor's records of these nodes (public: no token needed)."""
        query = "&".join(f"node={quote(n, safe='')}" for n in node_ids)
        return await self._call("GET", f"/v1/reputation?{query}", ReputationList, auth=False)

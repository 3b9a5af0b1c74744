"""`p2pfaas account ...`: accounts, tokens, key and node claims, balances and payouts from the shell.

    p2pfaas account signup NAME [--role lessee|volunteer]   prompts for a password; keeps the session token
    p2pfaas account login NAME [--scope S ...] [--ttl S]    a new session token
    p2pfaas account logout                                  revokes the kept token and forgets it
    p2pfaas account whoami
    p2pfaas account token create|list|revoke                API tokens for scripts and CI
    p2pfaas account claim-key [--key FILE]                  bind your lessee key to your account
    p2pfaas account claim-node --node-key FILE              bind your node to your account (volunteers)
    p2pfaas account reputation [NODE_ID ...]                 nodes' records at the anchor (default: yours)
    p2pfaas account balance
    p2pfaas account payout request AMOUNT --to DEST | show ID | mark ID paid|failed (operator)
    p2pfaas account topup AMOUNT --ref REF [--provider P]   pay credits in (manual: an operator records it)
    p2pfaas account grant USER AMOUNT --ref REF             an operator gives credits
    p2pfaas account add-operator NAME --db URL              straight into the anchor's database

The token lives in `$P2PFAAS_HOME/token` (default ~/.p2pfaas/token), mode 600, or comes from
$P2PFAAS_TOKEN. Passwords are read without echo, or from stdin with `--password-stdin`
(scripts); never from the command line, where `ps` would show them. Amounts are in credits
(up to six decimals: 1 credit = 1,000,000 micro-credits).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from p2pfaas.cli.tables import print_table
from p2pfaas.cli.usage import add_usage_command
from p2pfaas.client.account import AccountClient
from p2pfaas.clock import wall_time
from p2pfaas.environment import default_key, load_token, token_path
from p2pfaas.errors import ConfigError, LocalError
from p2pfaas.identity import KeyPair

__all__ = ["register", "run_logged_in"]

MICRO = 1_000_000


def save_token(token: str) -> Path:
    """Write the token so that only its owner can read it (created 600, never widened)."""
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def credits_to_micro(text: str) -> int:
    try:
        micro = Decimal(text) * MICRO
    except InvalidOperation:
        raise ConfigError(f"{text!r} is not an amount of credits") from None
    if micro != micro.to_integral_value() or micro <= 0:
        raise ConfigError(f"{text!r}: an amount is positive, with at most six decimals")
    return int(micro)


def micro_to_credits(micro: int) -> str:
    return f"{Decimal(micro) / MICRO:.6f}"


def _password(args: argparse.Namespace, *, confirm: bool) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != first:
        raise LocalError("the passwords differ")
    return first


def _run(
    args: argparse.Namespace, work: Callable[[AccountClient], Awaitable[int]], *, token: bool = True
) -> int:
    async def main() -> int:
        async with AccountClient(args.anchor, token=load_token() if token else None) as client:
            return await work(client)

    return asyncio.run(main())


def run_logged_in(args: argparse.Namespace, work: Callable[[AccountClient], Awaitable[int]]) -> int:
    """`work` with an AccountClient that sends the saved token (`account login`), at `args.anchor`."""
    return _run(args, work)


# --- commands ------------------------------------------------------------------------------------


def cmd_signup(args: argparse.Namespace) -> int:
    password = _password(args, confirm=True)

    async def work(client: AccountClient) -> int:
        issued = await client.signup(args.username, password, role=args.role)
        path = save_token(issued.token)
        print(
            f"signed up {issued.username} ({issued.role}), account {issued.account_id}; token kept in {path}"
        )
        return 0

    return _run(args, work, token=False)


def cmd_login(args: argparse.Namespace) -> int:
    password = _password(args, confirm=False)

    async def work(client: AccountClient) -> int:
        issued = await client.login(args.username, password, scopes=tuple(args.scope), ttl_s=args.ttl)
        path = save_token(issued.token)
        print(
            f"logged in as {issued.username}; token {issued.token_id} kept in {path}"
            f" ({' '.join(issued.scopes)})"
        )
        return 0

    return _run(args, work, token=False)


def cmd_logout(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        me = await client.me()
        await client.revoke(me.token_id)
        token_path().unlink(missing_ok=True)
        print(f"revoked token {me.token_id} and forgot it")
        return 0

    return _run(args, work)


def cmd_whoami(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        me = await client.me()
        print(f"{me.username} ({me.role}), user {me.user_id}, account {me.account_id}, token {me.token_id}")
        print(f"scopes: {' '.join(me.scopes)}")
        for key in me.keys:
            print(f"{key.kind:7} {key.key_id}")
        return 0

    return _run(args, work)


def cmd_token_create(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        issued = await client.create_token(scopes=tuple(args.scope), ttl_s=args.ttl)
        print(issued.token)  # shown once: the anchor keeps only its hash
        print(f"token {issued.token_id}: {' '.join(issued.scopes)}", file=sys.stderr)
        return 0

    return _run(args, work)


def cmd_token_list(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        for t in (await client.tokens()).tokens:
            state = "revoked" if t.revoked_at is not None else f"expires {t.expires_at:.0f}"
            print(f"{t.token_id}  {state:20}  {' '.join(t.scopes)}")
        return 0

    return _run(args, work)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        await client.revoke(args.token_id)
        print(f"revoked {args.token_id}")
        return 0

    return _run(args, work)


def cmd_claim(args: argparse.Namespace) -> int:
    kind = "node" if args.account_command == "claim-node" else "lessee"
    path = Path(args.node_key if kind == "node" else args.key).expanduser()
    keys = KeyPair.load(path)

    async def work(client: AccountClient) -> int:
        info = await client.claim_key(keys, kind=kind, label=args.label)
        print(f"{kind} key {info.key_id} is bound to your account")
        return 0

    return _run(args, work)


def cmd_reputation(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        node_ids = list(args.node_id)
        if not node_ids:  # your own nodes
            node_ids = [k.key_id for k in (await client.me()).keys if k.kind == "node"]
        for r in (await client.reputations(node_ids)).nodes:
            print(
                f"{r.node_id}  agreed {r.agreements}  disagreed {r.disagreements}"
                f"  streak {r.consecutive_valid}  lies {r.lies}  runs alone {r.trust_probability:.0%}"
            )
        return 0

    return _run(args, work, token=not args.node_id)


def cmd_balance(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        rows = [
            (str(a.account_id), a.kind, micro_to_credits(a.balance_micro), a.name)
            for a in (await client.balances()).accounts
        ]
        print_table(("account", "kind", "credits", "name"), rows, align="rlr")
        return 0

    return _run(args, work)


def cmd_payout(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        if args.payout_command == "request":
            payout_id = args.id or f"{os.urandom(8).hex()}"
            info = await client.request_payout(
                payout_id, amount_micro=credits_to_micro(args.amount), destination=args.to
            )
        elif args.payout_command == "show":
            info = await client.payout(args.payout_id)
        else:
            info = await client.settle_payout(args.payout_id, args.state)
        print(
            f"payout {info.payout_id}: {micro_to_credits(info.amount_micro)} credits"
            f" to {info.destination}: {info.state}"
        )
        return 0

    return _run(args, work)


def cmd_topup(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        done = await client.top_up(
            args.provider, credits_to_micro(args.amount), payment_ref=args.ref, username=args.user
        )
        again = " (recorded before; nothing moved)" if done.repeat else ""
        print(f"topped up; the account now holds {micro_to_credits(done.balance_micro)} credits{again}")
        return 0

    return _run(args, work)


def cmd_grant(args: argparse.Namespace) -> int:
    async def work(client: AccountClient) -> int:
        done = await client.grant(args.username, credits_to_micro(args.amount), ref=args.ref, memo=args.memo)
        again = " (done before; nothing moved)" if done.repeat else ""
        print(f"granted; {args.username} now holds {micro_to_credits(done.balance_micro)} credits{again}")
        return 0

    return _run(args, work)


def cmd_add_operator(args: argparse.Namespace) -> int:
    from p2pfaas.anchor.accounts import AccountStore
    from p2pfaas.anchor.passwords import PasswordHasher, check_new_password
    from p2pfaas.db import open_database

    password = _password(args, confirm=True)
    check_new_password(password, username=args.username)

    async def main() -> int:
        async with open_database(args.db) as db:
            stored = await PasswordHasher().hash(password)
            user = await AccountStore(db).create_user(
                args.username, password_hash=stored, role="operator", now=wall_time()
            )
        print(f"operator {user.username} created (user {user.user_id}); log in with `p2pfaas account login`")
        return 0

    return asyncio.run(main())


# --- argparse ------------------------------------------------------------------------------------


def register(groups: Any, *, default_anchor: str) -> None:
    """Add the `account` command group to the top-level parser's subparsers."""
    account = groups.add_parser("account", help="accounts, API tokens, claims, balances, payouts")
    sub = account.add_subparsers(dest="account_command", required=True)

    def command(parent: Any, name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        parser = parent.add_parser(name, help=text, description=text)
        parser.set_defaults(handler=handler)
        parser.add_argument("--anchor", default=default_anchor, help="anchor URL (default: %(default)s)")
        return parser

    def password_option(parser: Any) -> None:
        parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    signup = command(sub, "signup", cmd_signup, "create an account and keep its session token")
    signup.add_argument("username")
    signup.add_argument("--role", choices=("lessee", "volunteer"), default="lessee")
    password_option(signup)
    login = command(sub, "login", cmd_login, "log in and keep a session token")
    login.add_argument("username")
    login.add_argument("--scope", action="append", default=[], help="limit the token (repeatable)")
    login.add_argument("--ttl", type=float, default=0.0, help="seconds (default: a day)")
    password_option(login)
    command(sub, "logout", cmd_logout, "revoke the kept token and forget it")
    command(sub, "whoami", cmd_whoami, "who the kept token belongs to")

    tokens = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    create = command(tokens, "create", cmd_token_create, "mint an API token (printed once)")
    create.add_argument(
        "--scope", action="append", default=[], help="a scope it holds (repeatable; default all)"
    )
    create.add_argument("--ttl", type=float, default=0.0, help="seconds (default: 90 days; at most 366)")
    command(tokens, "list", cmd_token_list, "your tokens, without their secrets")
    revoke = command(tokens, "revoke", cmd_token_revoke, "revoke one of your tokens")
    revoke.add_argument("token_id")

    claim_key = command(sub, "claim-key", cmd_claim, "bind your lessee key to your account")
    claim_key.add_argument("--key", default=str(default_key()), help="lessee key file")
    claim_key.add_argument("--label", default="", help="a note to recognise it by")
    claim_node = command(sub, "claim-node", cmd_claim, "bind your node to your account (its key signs)")
    claim_node.add_argument("--node-key", required=True, help="the node's key file (node run's work dir)")
    claim_node.add_argument("--label", default="", help="a note to recognise it by")

    reputation = command(sub, "reputation", cmd_reputation, "nodes' records at the anchor (default: yours)")
    reputation.add_argument("node_id", nargs="*", help="node ids (default: the nodes you claimed)")
    command(sub, "balance", cmd_balance, "your accounts and their balances")
    add_usage_command(sub, command, _run)
    payouts = sub.add_parser("payout", help="payouts of earnings").add_subparsers(
        dest="payout_command", required=True
    )
    request = command(payouts, "request", cmd_payout, "ask for AMOUNT credits to be paid out")
    request.add_argument("amount")
    request.add_argument("--to", required=True, help="where to (e.g. an IBAN); shown to the operator")
    request.add_argument("--id", default="", help="your id for it (asking again with it changes nothing)")
    show = command(payouts, "show", cmd_payout, "a payout's state")
    show.add_argument("payout_id")
    mark = command(payouts, "mark", cmd_payout, "operator: the provider paid it, or it failed")
    mark.add_argument("payout_id")
    mark.add_argument("state", choices=("paid", "failed"))

    topup = command(sub, "topup", cmd_topup, "pay credits in through a payment provider")
    topup.add_argument("amount")
    topup.add_argument("--provider", default="manual", help="payment provider (default: %(default)s)")
    topup.add_argument("--ref", required=True, help="the payment's reference: the same ref counts once")
    topup.add_argument("--user", default="", help="operator, manual payments: whose account to credit")

    grant = command(sub, "grant", cmd_grant, "operator: give a user credits")
    grant.add_argument("username")
    grant.add_argument("amount")
    grant.add_argument("--ref", required=True, help="idempotency key: the same ref grants once")
    grant.add_argument("--memo", default="")

    operator = sub.add_parser(
        "add-operator", help="create an operator account directly in the anchor's database"
    )
    operator.set_defaults(handler=cmd_add_operator)
    operator.add_argument("username")
    operator.add_argument("--db", required=True, help="the anchor's database URL")
    password_option(operator)

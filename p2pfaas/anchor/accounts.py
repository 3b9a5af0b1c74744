"""The accounts store: users, their API tokens, and which user owns which lessee key or node.

`AccountStore` is the only code that queries `users`, `api_tokens` and `key_owners`. Each method is
one transaction through `Database.run` (retried through deadlocks and lost connections) and either
idempotent or guarded by a unique key, so a retry cannot create a second user or token.

Every query that reads or changes something a user owns filters by that user's id, so a handler
that passes the caller's `user_id` cannot touch another user's tokens or keys by naming them.

What it does not do: hash passwords or tokens (`passwords.py`, `tokens.py`), verify key proofs
(`accounts_api.py`), read a clock (every `now` is passed in), or move money (`p2pfaas.ledger`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, api_tokens, key_owners, lessee_keys, users
from p2pfaas.db.upsert import insert_ignore
from p2pfaas.errors import NotFound, Refused, SignatureError
from p2pfaas.identity import node_id_of
from p2pfaas.ledger.postings import is_duplicate_key

__all__ = ["AccountStore", "KeyKind", "OwnedKey", "TokenRow", "UserRow", "normalize_username"]

_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{2,63}")


class KeyKind:
    LESSEE = "lessee"
    NODE = "node"
    ALL = (LESSEE, NODE)


def normalize_username(username: str) -> str:
    """Usernames compare case-insensitively; refuse anything but 3-64 of [a-z0-9_.-]."""
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise Refused(
            "a username is 3 to 64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
            status=400,
        )
    return name


def user_account_name(user_id: int) -> str:
    """The ledger account a user spends from (lessee) or earns into (volunteer)."""
    return f"user:{user_id}"


@dataclass(frozen=True)
class UserRow:
    user_id: int
    username: str
    role: str
    account_id: int
    password_hash: str


@dataclass(frozen=True)
class TokenRow:
    token_id: str
    user_id: int
    scopes: str
    created_at: float
    expires_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class OwnedKey:
    key_id: str
    kind: str
    public_key: bytes
    created_at: float


@dataclass(frozen=True)
class TokenHolder:
    """What a valid token says about its caller: the user behind it and the token's own scopes."""

    user: UserRow
    token: TokenRow


class AccountStore:
    """Account queries over an open `Database`; driven by the anchor's handlers and `auth`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- users ----------------------------------------------------------------------------------

    async def create_user(self, username: str, *, password_hash: str, role: str, now: float) -> UserRow:
        """A new user with an empty ledger account of its own. Refused (409) if the name is taken."""
        name = normalize_username(username)

        async def work(connection: AsyncConnection) -> UserRow:
            taken = await connection.scalar(sa.select(users.c.user_id).where(users.c.username == name))
            if taken is not None:
                raise Refused(f"username {name!r} is taken", status=409)
            try:
                result = await connection.execute(
                    users.insert().values(
                        username=name, password_hash=password_hash, role=role, account_id=None, created_at=now
                    )
                )
            except sa_exc.IntegrityError as error:  # a concurrent signup took the name first
                if is_duplicate_key(error):
                    raise Refused(f"username {name!r} is taken", status=409) from None
                raise
            user_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            # The ledger's account kinds name the roles; an operator's own account is a lessee's.
            kind = role if role in ("lessee", "volunteer") else "lessee"
            account = await connection.execute(
                accounts.insert().values(
                    name=user_account_name(user_id),
                    kind=kind,
                    owner_user_id=user_id,
                    balance_micro=0,
                    created_at=now,
                )
            )
            account_id = int(account.inserted_primary_key[0])  # type: ignore[index]
            await connection.execute(
                users.update().where(users.c.user_id == user_id).values(account_id=account_id)
            )
            return UserRow(user_id, name, role, account_id, password_hash)

        return await self.db.run(work, what=f"create user {name}")

    async def user_by_name(self, username: str) -> UserRow | None:
        try:
            name = normalize_username(username)
        except Refused:
            return None
        return await self._user(users.c.username == name)

    async def user_by_id(self, user_id: int) -> UserRow | None:
        return await self._user(users.c.user_id == user_id)

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        async def work(connection: AsyncConnection) -> None:
            await connection.execute(
                users.update().where(users.c.user_id == user_id).values(password_hash=password_hash)
            )

        await self.db.run(work, what="store password hash")

    async def _user(self, where: sa.ColumnElement[bool]) -> UserRow | None:
        query = sa.select(
            users.c.user_id, users.c.username, users.c.role, users.c.account_id, users.c.password_hash
        ).where(where)

        async def work(connection: AsyncConnection) -> UserRow | None:
            row = (await connection.execute(query)).one_or_none()
            return None if row is None else _user_row(row._mapping)

        return await self.db.run(work, what="read user", write=False)

    # --- API tokens -----------------------------------------------------------------------------

    async def add_token(
        self, user_id: int, *, token_id: str, token_hash: str, scopes: str, now: float, expires_at: float
    ) -> TokenRow:
        row = {
            "token_hash": token_hash,
            "token_id": token_id,
            "user_id": user_id,
            "scopes": scopes,
            "created_at": now,
            "expires_at": expires_at,
            "revoked_at": None,
        }

        async def work(connection: AsyncConnection) -> None:
            # Idempotent on the hash: a retried insert after a lost COMMIT finds its row.
            await connection.execute(insert_ignore(self.db.dialect, api_tokens, row, key=["token_hash"]))

        await self.db.run(work, what="add API token")
        return TokenRow(token_id, user_id, scopes, now, expires_at, None)

    async def holder(self, token_hash: str, *, now: float) -> TokenHolder | None:
        """The user and token behind `token_hash`, if the token exists, is not revoked and not expired."""
        query = (
            sa.select(
                users.c.user_id,
                users.c.username,
                users.c.role,
                users.c.account_id,
                users.c.password_hash,
                *_TOKEN_COLUMNS,
            )
            .join(users, users.c.user_id == api_tokens.c.user_id)
            .where(
                api_tokens.c.token_hash == token_hash,
                api_tokens.c.revoked_at.is_(None),
                api_tokens.c.expires_at > now,
            )
        )

        async def work(connection: AsyncConnection) -> TokenHolder | None:
            row = (await connection.execute(query)).one_or_none()
            return None if row is None else TokenHolder(_user_row(row._mapping), _token_row(row._mapping))

        return await self.db.run(work, what="check API token", write=False)

    async def tokens_of(self, user_id: int) -> list[TokenRow]:
        """The user's tokens, newest first, revoked and expired ones included (for the record)."""
        query = (
            sa.select(*_TOKEN_COLUMNS)
            .where(api_tokens.c.user_id == user_id)
            .order_by(api_tokens.c.created_at.desc(), api_tokens.c.token_id)
        )

        async def work(connection: AsyncConnection) -> list[TokenRow]:
            return [_token_row(row._mapping) for row in (await connection.execute(query)).all()]

        return await self.db.run(work, what="list API tokens", write=False)

    async def revoke_token(self, user_id: int, token_id: str, *, now: float) -> None:
        """Revoke the user's token `token_id` (again is fine). NotFound if the user has no such token:
        another user's token id gets the same answer as a made-up one."""
        update = (
            api_tokens.update()
            .where(api_tokens.c.user_id == user_id, api_tokens.c.token_id == token_id)
            .where(api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        exists = sa.select(sa.literal(1)).where(
            api_tokens.c.user_id == user_id, api_tokens.c.token_id == token_id
        )

        async def work(connection: AsyncConnection) -> bool:
            await connection.execute(update)
            return await connection.scalar(exists) is not None

        if not await self.db.run(work, what="revoke API token"):
            raise NotFound(f"you have no token {token_id[:16]!r}")

    # --- lessee keys and nodes ------------------------------------------------------------------

    async def bind_key(self, user_id: int, public_key: bytes, *, kind: str, label: str, now: float) -> str:
        """Record that `user_id` owns `public_key` (the caller checked the proof); return its key id.

        Binding a key the user owns already changes nothing; a key another user owns is refused
        (409): the first proven claim wins, and nobody can take a key or node away by claiming it.
        A lessee key is registered in the registry too, so it can deploy at once.
        """
        if kind not in KeyKind.ALL:
            raise Refused(f"key kind must be one of {', '.join(KeyKind.ALL)}, got {kind[:16]!r}", status=400)
        try:
            key_id = node_id_of(public_key).hex()
        except SignatureError as error:
            raise Refused(str(error), status=400) from None
        owner = {
            "key_id": key_id,
            "user_id": user_id,
            "public_key": public_key,
            "kind": kind,
            "created_at": now,
        }
        lessee = {"key_id": key_id, "public_key": public_key, "label": label[:128], "created_at": now}

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(insert_ignore(self.db.dialect, key_owners, owner, key=["key_id"]))
            # A locking read: a concurrent claim of the same key has committed or waits for us.
            row = (
                await connection.execute(
                    sa.select(key_owners.c.user_id, key_owners.c.kind)
                    .where(key_owners.c.key_id == key_id)
                    .with_for_update()
                )
            ).one()
            if (int(row.user_id), row.kind) != (user_id, kind):
                raise Refused(f"key {key_id[:12]} is already bound to another account or use", status=409)
            if kind == KeyKind.LESSEE:
                await connection.execute(insert_ignore(self.db.dialect, lessee_keys, lessee, key=["key_id"]))

        await self.db.run(work, what=f"bind key {key_id[:12]}")
        return key_id

    async def key_owner(self, key_id: str) -> tuple[int, str] | None:
        """(user id, kind) of whoever bound `key_id`, or None while nobody has."""
        query = sa.select(key_owners.c.user_id, key_owners.c.kind).where(key_owners.c.key_id == key_id)

        async def work(connection: AsyncConnection) -> tuple[int, str] | None:
            row = (await connection.execute(query)).one_or_none()
            return None if row is None else (int(row.user_id), str(row.kind))

        return await self.db.run(work, what="look up key owner", write=False)

    async def keys_of(self, user_id: int) -> list[OwnedKey]:
        query = (
            sa.select(
                key_owners.c.key_id, key_owners.c.kind, key_owners.c.public_key, key_owners.c.created_at
            )
            .where(key_owners.c.user_id == user_id)
            .order_by(key_owners.c.kind, key_owners.c.key_id)
        )

        async def work(connection: AsyncConnection) -> list[OwnedKey]:
            rows = (await connection.execute(query)).all()
            return [OwnedKey(r.key_id, r.kind, bytes(r.public_key), float(r.created_at)) for r in rows]

        return await self.db.run(work, what="list keys", write=False)


_TOKEN_COLUMNS = (
    api_tokens.c.token_id,
    api_tokens.c.user_id.label("token_user_id"),
    api_tokens.c.scopes,
    api_tokens.c.created_at,
    api_tokens.c.expires_at,
    api_tokens.c.revoked_at,
)


def _user_row(m: sa.RowMapping) -> UserRow:
    return UserRow(
        int(m["user_id"]), str(m["username"]), str(m["role"]), int(m["account_id"]), str(m["password_hash"])
    )


def _token_row(m: sa.RowMapping) -> TokenRow:
    revoked = m["revoked_at"]
    return TokenRow(
        str(m["token_id"]),
        int(m["token_user_id"]),
        str(m["scopes"]),
        float(m["created_at"]),
        float(m["expires_at"]),
        None if revoked is None else float(revoked),
    )

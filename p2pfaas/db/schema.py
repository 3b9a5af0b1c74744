"""The anchor database's tables, as SQLAlchemy Core metadata shared by SQLite and MySQL/MariaDB.

This is the query layer's view of the schema; the Alembic revisions in `migrations/versions/` are
what create and change it, by hand and in order. Whoever changes a table here writes the revision
that makes the same change (tests/db/test_engine.py checks that the two agree).

Conventions, chosen so the later ledger tables fit beside these:
- Times are float seconds since the Unix epoch as the caller's clock reports them, stored as DOUBLE
  (microsecond resolution). The store never reads a clock: the anchor passes wall-clock time, the
  simulator its virtual time.
- Key and node ids are lowercase hex SHA-1 of the raw 32-byte Ed25519 public key (CHAR(40)); bundle
  digests are lowercase hex SHA-256 (CHAR(64)).
- On MySQL every table is InnoDB, utf8mb4 with a binary collation: names compare byte for byte,
  so "Resize" and "resize" are two functions, as they are on SQLite.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from p2pfaas.money import MAX_AMOUNT_MICRO

__all__ = [
    "accounts",
    "advert_lies",
    "anchor_keys",
    "api_tokens",
    "bundles",
    "entries",
    "functions",
    "held_receipts",
    "key_owners",
    "lessee_keys",
    "metadata",
    "nodes",
    "payouts",
    "replica_verdicts",
    "replication_groups",
    "reputation",
    "settlements",
    "transfers",
    "users",
    "vouchers",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def key_id_column(name: str, *args: Any, **kwargs: Any) -> sa.Column[str]:
    """A hex SHA-1 id column (lessee key id or node id)."""
    return sa.Column(name, sa.CHAR(40), *args, **kwargs)


def public_key_type() -> sa.types.TypeEngine[bytes]:
    """A raw 32-byte Ed25519 public key: BLOB on SQLite, BINARY(32) on MySQL."""
    return sa.LargeBinary().with_variant(mysql.BINARY(32), "mysql", "mariadb")


def timestamp_column(name: str, **kwargs: Any) -> sa.Column[float]:
    """Float seconds since the epoch, as passed in by the caller."""
    return sa.Column(name, sa.Double(), **kwargs)


lessee_keys = sa.Table(
    "lessee_keys",
    metadata,
    key_id_column("key_id", primary_key=True),
    sa.Column("public_key", public_key_type(), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    timestamp_column("created_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

bundles = sa.Table(
    "bundles",
    metadata,
    sa.Column("digest", sa.CHAR(64), primary_key=True),
    key_id_column("owner_key_id", sa.ForeignKey("lessee_keys.key_id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("runtime", sa.String(64), nullable=False),
    sa.Column("handler", sa.String(255), nullable=False),
    sa.Column("memory_mb", sa.Integer(), nullable=False),
    sa.Column("timeout_s", sa.Double(), nullable=False),
    sa.Column("deterministic", sa.Boolean(), nullable=False),
    # The signed header exactly as it travels on the wire; opaque here. MEDIUMBLOB (16 MiB) on
    # MySQL because a header that lists a bundle's files can outgrow BLOB's 64 KiB.
    sa.Column(
        "signed_manifest",
        sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"),
        nullable=False,
    ),
    sa.Column("archive", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    timestamp_column("created_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

# Wheels of dependency layers (revision 0007, `p2pfaas.bundle.lock`), by SHA-256, uploaded by a
# lessee before a bundle whose lock names them. Stored in chunks (`WHEEL_CHUNK_BYTES`): a wheel may be
# larger than a server's max_allowed_packet (16 MiB by default), a chunk never is.
wheels = sa.Table(
    "wheels",
    metadata,
    sa.Column("sha256", sa.CHAR(64), primary_key=True),
    sa.Column("filename", sa.String(200), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    key_id_column("uploader_key_id", nullable=False),
    timestamp_column("created_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

wheel_chunks = sa.Table(
    "wheel_chunks",
    metadata,
    sa.Column("sha256", sa.CHAR(64), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

# The name a lessee deploys under points at one bundle; deploying another version moves the pointer.
functions = sa.Table(
    "functions",
    metadata,
    key_id_column("owner_key_id", sa.ForeignKey("lessee_keys.key_id"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("digest", sa.CHAR(64), sa.ForeignKey("bundles.digest"), nullable=False, index=True),
    timestamp_column("updated_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

nodes = sa.Table(
    "nodes",
    metadata,
    key_id_column("node_id", primary_key=True),
    sa.Column("public_key", public_key_type(), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("runtimes", sa.JSON(), nullable=False),  # a JSON list of runtime names
    sa.Column("cores", sa.Double(), nullable=True),  # None: the node did not say how much it lends
    sa.Column("memory_mb", sa.Integer(), nullable=True),
    timestamp_column("registered_at", nullable=False),
    timestamp_column("last_seen_at", nullable=False, index=True),
    **MYSQL_TABLE_OPTIONS,
)


# --- accounts and the ledger (issue #5; created by revision 0002) ---------------------------------
# Money is integer micro-credits (BIGINT), every amount and balance within +-MAX_AMOUNT_MICRO
# (CHECKs of revision 0004; p2pfaas/money.py). Every movement is one `transfers` row and two or more
# `entries` rows whose amounts sum to zero; entries are only ever inserted. `accounts.balance_micro`
# is the running sum of an account's entries, updated in the same transaction as the entries.


def bounded_amount(table: str, column: str, low: int) -> list[sa.CheckConstraint]:
    """CHECKs (revision 0004) holding `column` to low..MAX_AMOUNT_MICRO, and on SQLite, whose columns
    take any value, to integers (an overflowing SQLite sum silently becomes a float)."""
    return [
        sa.CheckConstraint(
            f"{column} BETWEEN {low} AND {MAX_AMOUNT_MICRO}", name=f"ck_{table}_{column}_bound"
        ),
        sa.CheckConstraint(f"typeof({column}) = 'integer'", name=f"ck_{table}_{column}_int").ddl_if(
            dialect="sqlite"
        ),
    ]


def serial_column(name: str) -> sa.Column[int]:
    """An auto-increment BIGINT primary key (INTEGER on SQLite, where only that aliases the rowid)."""
    return sa.Column(
        name, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


# Bundles whose owner removed their function (`fn rm`, revision 0009), in the order revoked: nodes
# poll for new rows, drop those bundles and run them no more.
revoked_bundles = sa.Table(
    "revoked_bundles",
    metadata,
    serial_column("seq"),
    sa.Column("digest", sa.CHAR(64), nullable=False),
    timestamp_column("revoked_at", nullable=False),
    sa.UniqueConstraint("digest"),
    **MYSQL_TABLE_OPTIONS,
)

# People who sign up: lessees, volunteers and operators. The password hash is a self-describing
# scrypt string (see p2pfaas.anchor.passwords); `account_id` is the user's own ledger account.
users = sa.Table(
    "users",
    metadata,
    serial_column("user_id"),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # "lessee", "volunteer" or "operator"
    sa.Column("account_id", sa.BigInteger(), nullable=True),
    timestamp_column("created_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

# API tokens: only the SHA-256 of the (random, 256-bit) secret is stored.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("token_hash", sa.CHAR(64), primary_key=True),
    sa.Column("token_id", sa.CHAR(16), nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.user_id"), nullable=False, index=True),
    sa.Column("scopes", sa.String(255), nullable=False),  # space-separated
    timestamp_column("created_at", nullable=False),
    timestamp_column("expires_at", nullable=False),
    timestamp_column("revoked_at", nullable=True),
    **MYSQL_TABLE_OPTIONS,
)

# Which user owns a lessee key, and which volunteer claimed a node (by proof of key).
key_owners = sa.Table(
    "key_owners",
    metadata,
    key_id_column("key_id", primary_key=True),
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.user_id"), nullable=False, index=True),
    sa.Column("public_key", public_key_type(), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # "lessee" or "node"
    timestamp_column("created_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

# Ledger accounts. `kind` decides the sign rule: only "external" accounts (the world outside the
# ledger: grants, payment providers, paid-out money) may go below zero.
accounts = sa.Table(
    "accounts",
    metadata,
    serial_column("account_id"),
    sa.Column("name", sa.String(96), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("owner_user_id", sa.BigInteger(), nullable=True, index=True),
    sa.Column("balance_micro", sa.BigInteger(), nullable=False),
    timestamp_column("created_at", nullable=False),
    *bounded_amount("accounts", "balance_micro", -MAX_AMOUNT_MICRO),
    **MYSQL_TABLE_OPTIONS,
)

transfers = sa.Table(
    "transfers",
    metadata,
    serial_column("transfer_id"),
    sa.Column("kind", sa.String(16), nullable=False),
    # Idempotency key of the operation that made it (e.g. "grant:<request id>"); unique.
    sa.Column("ref", sa.String(128), nullable=False, unique=True),
    sa.Column("memo", sa.String(255), nullable=False),
    timestamp_column("created_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

entries = sa.Table(
    "entries",
    metadata,
    serial_column("entry_id"),
    sa.Column(
        "transfer_id", sa.BigInteger(), sa.ForeignKey("transfers.transfer_id"), nullable=False, index=True
    ),
    sa.Column(
        "account_id", sa.BigInteger(), sa.ForeignKey("accounts.account_id"), nullable=False, index=True
    ),
    sa.Column("amount_micro", sa.BigInteger(), nullable=False),  # + credit, - debit
    *bounded_amount("entries", "amount_micro", -MAX_AMOUNT_MICRO),
    **MYSQL_TABLE_OPTIONS,
)

# A spending voucher's escrow is its own account (`hold_account_id`): what is left of the budget is
# that account's balance, so "never overspent" is "the hold never goes below zero".
vouchers = sa.Table(
    "vouchers",
    metadata,
    sa.Column("voucher_id", sa.String(64), primary_key=True),
    sa.Column("lessee_account_id", sa.BigInteger(), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("hold_account_id", sa.BigInteger(), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("lessee_key", public_key_type(), nullable=False),
    sa.Column("budget_micro", sa.BigInteger(), nullable=False),
    timestamp_column("expires_at", nullable=False, index=True),
    sa.Column("state", sa.String(8), nullable=False),  # "open" or "closed"
    sa.Column("signed", sa.LargeBinary(), nullable=False),  # the anchor-signed Voucher, encoded
    timestamp_column("created_at", nullable=False),
    *bounded_amount("vouchers", "budget_micro", 1),
    **MYSQL_TABLE_OPTIONS,
)

# One row per invocation ever paid: the primary key is what makes settlement exactly-once.
settlements = sa.Table(
    "settlements",
    metadata,
    sa.Column("invocation_id", sa.String(64), primary_key=True),
    sa.Column("voucher_id", sa.String(64), nullable=False, index=True),
    key_id_column("node_id", nullable=False),
    sa.Column("price_micro", sa.BigInteger(), nullable=False),
    sa.Column("fee_micro", sa.BigInteger(), nullable=False),
    sa.Column(
        "result_sha256",
        sa.LargeBinary().with_variant(mysql.VARBINARY(32), "mysql", "mariadb"),
        nullable=False,
    ),
    sa.Column("attempt", sa.CHAR(32), nullable=False),  # which transaction inserted it
    sa.Column("transfer_id", sa.BigInteger(), nullable=True),
    timestamp_column("settled_at", nullable=False),
    # What it paid for (revision 0008, `account usage`): the function (NULL: a channel's rest,
    # `ledger/rounds.py`, or a row from before), and the receipt's CPU and memory-time.
    sa.Column("digest", sa.CHAR(64), nullable=True),
    sa.Column("cpu_ms", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("mb_ms", sa.BigInteger(), nullable=False, server_default="0"),
    *bounded_amount("settlements", "price_micro", 0),
    *bounded_amount("settlements", "fee_micro", 0),
    **MYSQL_TABLE_OPTIONS,
)

# Payment channels (revision 0006, `p2pfaas.channels`): per voucher and node, the highest total the
# lessee signed for that node's results, and how much of it the node's paid receipts have used.
channels = sa.Table(
    "channels",
    metadata,
    sa.Column("voucher_id", sa.String(64), primary_key=True),
    key_id_column("node_id", primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("signed_micro", sa.BigInteger(), nullable=False),
    sa.Column("paid_micro", sa.BigInteger(), nullable=False),
    timestamp_column("updated_at", nullable=False),
    sa.CheckConstraint("paid_micro <= signed_micro", name="ck_channels_paid_within_signed"),
    *bounded_amount("channels", "signed_micro", 0),
    *bounded_amount("channels", "paid_micro", 0),
    **MYSQL_TABLE_OPTIONS,
)

payouts = sa.Table(
    "payouts",
    metadata,
    sa.Column("payout_id", sa.String(64), primary_key=True),
    sa.Column(
        "account_id", sa.BigInteger(), sa.ForeignKey("accounts.account_id"), nullable=False, index=True
    ),
    sa.Column("amount_micro", sa.BigInteger(), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # "pending", "paid" or "failed"
    sa.Column("destination", sa.String(255), nullable=False),
    timestamp_column("created_at", nullable=False),
    timestamp_column("updated_at", nullable=False),
    *bounded_amount("payouts", "amount_micro", 1),
    **MYSQL_TABLE_OPTIONS,
)

# Node reputation for adaptive spot-checking (BOINC adaptive replication).
reputation = sa.Table(
    "reputation",
    metadata,
    key_id_column("node_id", primary_key=True),
    sa.Column("agreements", sa.BigInteger(), nullable=False),
    sa.Column("disagreements", sa.BigInteger(), nullable=False),
    sa.Column("consecutive_valid", sa.BigInteger(), nullable=False),
    timestamp_column("updated_at", nullable=False),
    sa.Column("lies", sa.BigInteger(), nullable=False, server_default="0"),  # revision 0003
    **MYSQL_TABLE_OPTIONS,
)

# The anchor's voucher-signing key, one row per name ("vouchers"). In the database, not a file, so
# every anchor behind a load balancer signs with the same key and nodes trust one public key.
anchor_keys = sa.Table(
    "anchor_keys",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("seed", sa.LargeBinary().with_variant(mysql.VARBINARY(32), "mysql", "mariadb"), nullable=False),
    timestamp_column("created_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)


# --- trust: replication votes and advert lies (issue #5; created by revision 0003) ----------------
# The queries live in p2pfaas/anchor/trust_store.py; the rules in p2pfaas/trust/.


def sha256_type() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.VARBINARY(32), "mysql", "mariadb")


# One row per replicated invocation a lessee reported: the first report of a group is the one counted.
replication_groups = sa.Table(
    "replication_groups",
    metadata,
    sa.Column("group_id", sa.CHAR(32), primary_key=True),
    key_id_column("lessee_key_id", nullable=False),
    sa.Column("digest", sa.CHAR(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # "agreed" or "inconclusive"
    sa.Column("result_sha256", sha256_type(), nullable=True),
    sa.Column("ballots", sa.Integer(), nullable=False),
    timestamp_column("reported_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

# Per replica: may its receipt be paid? "agreed" and "open" (inconclusive vote) yes, "dissent" never.
replica_verdicts = sa.Table(
    "replica_verdicts",
    metadata,
    sa.Column("invocation_id", sa.String(64), primary_key=True),
    sa.Column("group_id", sa.CHAR(32), nullable=False, index=True),
    key_id_column("node_id", nullable=False),
    sa.Column("verdict", sa.String(8), nullable=False),
    timestamp_column("decided_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

# Replica receipts that came before their vote: when the anchor first saw each (not the node's word).
held_receipts = sa.Table(
    "held_receipts",
    metadata,
    sa.Column("invocation_id", sa.String(64), primary_key=True),
    key_id_column("node_id", nullable=False),
    timestamp_column("first_seen_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

# Proven overcharges (a receipt above the node's own advertised prices); one per receipt.
advert_lies = sa.Table(
    "advert_lies",
    metadata,
    key_id_column("node_id", primary_key=True),
    sa.Column("invocation_id", sa.String(64), primary_key=True),
    sa.Column("price_micro", sa.BigInteger(), nullable=False),
    sa.Column("max_price_micro", sa.BigInteger(), nullable=False),
    timestamp_column("reported_at", nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

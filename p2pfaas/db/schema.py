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

__all__ = ["bundles", "functions", "lessee_keys", "metadata", "nodes"]

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

"""Compact, working byte-string literals for aiomysql connections.

aiomysql has no server-side parameters: it escapes every value into the SQL text. Two problems
with bytes values, for which `install_bytes_escaper` replaces the `escape` method of one aiomysql
connection (applied by `engine.py` to each connection its pool opens, nothing global):

- aiomysql 0.3.2 calls `pymysql.converters.escape_bytes_prefixed`, which PyMySQL 1.2.3+ turned
  into a placeholder string, so any bytes parameter raises "TypeError: 'str' object is not
  callable" (aio-libs/aiomysql#1080, fix pending in #1081).
- PyMySQL 1.2 spells bytes as hex (`_binary X'..'`), doubling their size on the wire: an 8 MiB
  bundle archive would no longer fit MariaDB's default 16 MiB max_allowed_packet.

We write `_binary'...'` with backslash escapes instead (about 3% larger than the raw bytes for
random data), which is what PyMySQL did before 1.2, or hex when the server session has
NO_BACKSLASH_ESCAPES set. Every other type still goes through aiomysql's own `escape`.
Remove this module when the aiomysql release in use escapes bytes itself (and test the 8 MiB case).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["escape_bytes", "escaped_size", "install_bytes_escaper"]

# The server status flag (MySQL client/server protocol) for sql_mode NO_BACKSLASH_ESCAPES.
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x0200

# Backslash first, so that the backslashes the later replacements add are not doubled again.
_BACKSLASH_ESCAPES = (
    (b"\\", b"\\\\"),
    (b"\0", b"\\0"),
    (b"\n", b"\\n"),
    (b"\r", b"\\r"),
    (b"\032", b"\\Z"),
    (b"'", b"\\'"),
    (b'"', b'\\"'),
)


def escape_bytes(value: bytes, *, backslash_escapes: bool = True) -> str:
    """An SQL literal for `value`, as text that aiomysql encodes back with 'surrogateescape'."""
    if not backslash_escapes:
        return f"_binary X'{value.hex()}'"
    for raw, escaped in _BACKSLASH_ESCAPES:
        value = value.replace(raw, escaped)
    # Bytes >= 0x80 become lone surrogates here and turn back into the same bytes when aiomysql
    # encodes the query with errors="surrogateescape".
    return "_binary'" + value.decode("ascii", "surrogateescape") + "'"


def escaped_size(value: bytes) -> int:
    """The number of bytes `escape_bytes(value)` puts on the wire, without building it."""
    return len("_binary''") + len(value) + sum(value.count(raw) for raw, _ in _BACKSLASH_ESCAPES)


def install_bytes_escaper(connection: Any) -> None:
    """Make `connection` (an `aiomysql.Connection`) escape bytes with `escape_bytes`."""
    escape_other: Callable[[object], str] = connection.escape

    def escape(value: object) -> str:
        if isinstance(value, bytes | bytearray | memoryview):
            no_backslash = connection.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES
            return escape_bytes(bytes(value), backslash_escapes=not no_backslash)
        return escape_other(value)

    connection.escape = escape

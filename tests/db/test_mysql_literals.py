"""Bytes literals for aiomysql (`p2pfaas.db.mysql_literals`): backslash-escaped `_binary'...'` that
turns back into the same bytes, hex under NO_BACKSLASH_ESCAPES, and only bytes taken from aiomysql.
Through a real MariaDB: `test_mysql_bytes_parameters_round_trip` (tests/db/test_engine.py)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.db.mysql_literals import (
    SERVER_STATUS_NO_BACKSLASH_ESCAPES,
    escape_bytes,
    escaped_size,
    install_bytes_escaper,
)


def unescape(literal: str) -> bytes:
    """What MySQL reads from a backslash-escaped `_binary'...'` literal."""
    assert literal.startswith("_binary'") and literal.endswith("'")
    body = literal[len("_binary'") : -1].encode("ascii", "surrogateescape")
    table = {ord("0"): b"\0", ord("n"): b"\n", ord("r"): b"\r", ord("Z"): b"\032"}
    out, i = bytearray(), 0
    while i < len(body):
        if body[i] == ord("\\"):
            out += table.get(body[i + 1], bytes([body[i + 1]]))
            i += 2
        else:
            assert body[i] not in b"'\"\0\n\r\032", body
            out.append(body[i])
            i += 1
    return bytes(out)


def test_special_bytes_are_escaped_and_backslashes_once() -> None:
    assert escape_bytes(b"a'b\\c\0") == "_binary'a\\'b\\\\c\\0'"
    assert escape_bytes(b"\xff\x00", backslash_escapes=False) == "_binary X'ff00'"


@given(st.binary(max_size=512))
def test_every_value_comes_back_and_its_size_is_known_beforehand(value: bytes) -> None:
    literal = escape_bytes(value)
    assert unescape(literal) == value
    assert len(literal.encode("ascii", "surrogateescape")) == escaped_size(value)


class Connection:
    """The two attributes of an aiomysql connection the escaper uses."""

    def __init__(self, server_status: int) -> None:
        self.server_status = server_status

    def escape(self, value: object) -> str:
        return f"other:{value!r}"


def test_the_installed_escaper_takes_bytes_only_and_follows_the_sessions_sql_mode() -> None:
    connection = Connection(server_status=0)
    install_bytes_escaper(connection)
    value = random.Random(1).randbytes(64)
    assert connection.escape(value) == escape_bytes(value)
    assert connection.escape(bytearray(b"'")) == "_binary'\\''"
    assert connection.escape(memoryview(b"x")) == "_binary'x'"
    assert connection.escape(7) == "other:7"
    connection.server_status = SERVER_STATUS_NO_BACKSLASH_ESCAPES
    assert connection.escape(b"'") == "_binary X'27'"

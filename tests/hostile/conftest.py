"""The hostile tests run against the real anchor routes, on SQLite and MariaDB (tests/ledger's fixtures)."""

from tests.anchor.ledgerkit import anchor
from tests.ledger.conftest import db

__all__ = ["anchor", "db"]

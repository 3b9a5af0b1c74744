"""The hostile tests run against the real anchor routes, on SQLite and MariaDB (tests/ledger's fixtures)."""

from tests.ledger.conftest import db
from tests.ledger.test_ledger_api import anchor

__all__ = ["anchor", "db"]

"""The anchor's SQL database: SQLite for a devnet, MySQL/MariaDB in production, one schema for both.

`open_database(url)` opens and migrates it; `Database.run` runs one retried transaction; the tables
are in `schema`. Stores that hold the queries live with their users (e.g. `p2pfaas.anchor.store`).
"""

from p2pfaas.db.engine import Database, head_revision, open_database
from p2pfaas.db.retry import RetryPolicy, is_transient, retry_transient

__all__ = ["Database", "RetryPolicy", "head_revision", "is_transient", "open_database", "retry_transient"]

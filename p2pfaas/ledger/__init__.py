"""The double-entry ledger in micro-credits (accounts, vouchers, settlement): issue #5.

Not built yet. It will live in the same database and migration history as the anchor's registry
(`p2pfaas.db`: SQLAlchemy Core over aiomysql/aiosqlite, Alembic migrations), reusing
`Database.run`'s retry of transient errors and the idempotent upserts in `p2pfaas.db.upsert`.
"""

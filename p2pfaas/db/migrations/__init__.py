"""Alembic migrations for the anchor database, run by `p2pfaas.db.engine` (there is no alembic.ini)."""

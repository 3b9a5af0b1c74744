"""Alembic revisions, numbered "0001", "0002", ... in the order they apply."""

"""Alembic migrations of the placer store; run from code by ``placer db upgrade``."""

"""site functions: the function name of each symbolized frame, for naming objects

Sites stored before this revision get ``[]`` (functions unknown): naming still works on
their ``file:line`` frames alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("placer_sites", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("functions", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("placer_sites", schema=None) as batch_op:
        batch_op.drop_column("functions")

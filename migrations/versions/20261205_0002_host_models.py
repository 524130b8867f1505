"""host models: this host's caches and DRAM, measured once by `placer calibrate`

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "placer_host_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("host_fingerprint", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("effective_cache_bytes", sa.BigInteger(), nullable=False),
        sa.Column("dram_latency_ns", sa.Float(), nullable=False),
        sa.Column("read_gbps", sa.Float(), nullable=False),
        sa.Column("write_gbps", sa.Float(), nullable=False),
        sa.Column("spread", sa.Float(), nullable=False),
        sa.Column("model", sa.JSON(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["placer_hosts.id"],
            name=op.f("fk_placer_host_models_host_id_placer_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_placer_host_models")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_placer_host_models_fingerprint")),
    )
    with op.batch_alter_table("placer_host_models", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_placer_host_models_host_id"), ["host_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("placer_host_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_placer_host_models_host_id"))
    op.drop_table("placer_host_models")

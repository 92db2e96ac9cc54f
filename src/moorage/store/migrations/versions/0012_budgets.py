"""spending limits per user and currency, why moorage stopped an endpoint, and the
controller's last sign of life

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Money exactly: NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC is a float).
_MONEY = sa.Numeric().with_variant(sa.String(length=64), "sqlite")


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column(
            "user_id",
            sa.String(length=32),
            sa.ForeignKey("users.user_id"),
            primary_key=True,
        ),
        sa.Column("currency", sa.String(length=8), primary_key=True),
        sa.Column("limit_amount", _MONEY, nullable=False),
        sa.Column("warning_amount", _MONEY, nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.drop_column("stop_reason")
    op.drop_table("budgets")

"""replicas' rates fixed at placement, and their usage closed into records

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Money exactly: NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC is a float).
_MONEY = sa.Numeric().with_variant(sa.String(length=64), "sqlite")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "replica_rates",
        sa.Column(
            "replica_id",
            sa.String(length=32),
            sa.ForeignKey("replicas.replica_id"),
            primary_key=True,
        ),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("flavor_id", sa.String(length=32), nullable=False),
        sa.Column("gpu_num", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("price_per_hour", _MONEY, nullable=False),
        sa.Column("placed_at", sa.DateTime(), nullable=False),
        sa.Column("billed_until", sa.DateTime(), nullable=True),
        sa.Column("settled", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_replica_rates_endpoint_id", "replica_rates", ["endpoint_id"])
    op.create_index("ix_replica_rates_user_id", "replica_rates", ["user_id"])
    op.create_index("ix_replica_rates_settled", "replica_rates", ["settled", "replica_id"])
    op.create_table(
        "usage_records",
        sa.Column("record_id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "replica_id",
            sa.String(length=32),
            sa.ForeignKey("replicas.replica_id"),
            nullable=False,
        ),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("flavor_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("period_end", sa.DateTime(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("gpu_seconds", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("cost", _MONEY, nullable=False),
        sa.UniqueConstraint("replica_id", "period_start"),
    )
    op.create_index("ix_usage_records_user_day", "usage_records", ["user_id", "day"])
    op.create_index("ix_usage_records_endpoint_day", "usage_records", ["endpoint_id", "day"])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("replica_rates")

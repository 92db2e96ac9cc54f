"""autoscaling: an endpoint's scale policy, when its autoscaler last changed its count,
the replicas it reserves against quotas and capacity (its maximum when automatic),
and the demand standalone gateways report

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.add_column(sa.Column("scale_policy", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("scaled_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("reserved_instances", sa.Integer(), nullable=False, server_default="0")
        )
    # Every endpoint so far scales by hand: it reserves what it asks for.
    op.execute("UPDATE endpoints SET reserved_instances = target_instance_number")
    op.create_table(
        "gateway_demand",
        sa.Column("gateway_id", sa.String(length=64), primary_key=True),
        sa.Column("service_id", sa.String(length=64), primary_key=True),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("arrived", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("busy_s", sa.Float(), nullable=False),
        sa.Column("waited_s", sa.Float(), nullable=False),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_gateway_demand_reported_at", "gateway_demand", ["reported_at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_demand_reported_at", table_name="gateway_demand")
    op.drop_table("gateway_demand")
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.drop_column("reserved_instances")
        batch_op.drop_column("scaled_at")
        batch_op.drop_column("scale_policy")

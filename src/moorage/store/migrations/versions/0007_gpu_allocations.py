"""gpu allocations: which replica holds which GPU, and each GPU flavor's GPUs

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flavors") as batch:
        batch.add_column(sa.Column("gpus", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "gpu_allocations",
        sa.Column("gpu_uuid", sa.String(length=128), nullable=False),
        sa.Column("replica_id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("flavor_id", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("allocated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("gpu_uuid"),
    )
    for column in ("replica_id", "endpoint_id", "flavor_id"):
        op.create_index(f"ix_gpu_allocations_{column}", "gpu_allocations", [column])


def downgrade() -> None:
    for column in ("replica_id", "endpoint_id", "flavor_id"):
        op.drop_index(f"ix_gpu_allocations_{column}", table_name="gpu_allocations")
    op.drop_table("gpu_allocations")
    with op.batch_alter_table("flavors") as batch:
        batch.drop_column("gpus")

"""replica startup watch: latest probe result, given port and listening ports

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replicas") as batch_op:
        batch_op.add_column(sa.Column("probe_detail", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("probe_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("given_port", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("listening_ports", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch_op:
        batch_op.drop_column("listening_ports")
        batch_op.drop_column("given_port")
        batch_op.drop_column("probe_since")
        batch_op.drop_column("probe_detail")

"""traffic: the responses each standalone gateway reports per endpoint (finished, with
a status of 500 or more, and the sum of their latencies) beside its demand

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Defaults of 0: rows a gateway reported before this revision counted none.
    with op.batch_alter_table("gateway_demand") as batch_op:
        batch_op.add_column(
            sa.Column("answered", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("errors", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("latency_s", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gateway_demand") as batch_op:
        batch_op.drop_column("latency_s")
        batch_op.drop_column("errors")
        batch_op.drop_column("answered")

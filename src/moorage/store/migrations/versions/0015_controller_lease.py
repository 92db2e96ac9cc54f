"""controller lease: the one row controllers compete for; its holder is the leader, its
epoch grows by one at each takeover (writes of an older epoch are refused), and it
expires at a time of the database's clock (seconds since the Unix epoch)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "controller_leases",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("expires_at", sa.Float(), nullable=False, server_default="0"),
    )
    # The row exists from the start: taking it over is always an UPDATE that compares
    # the epoch it read (never two INSERTs racing).
    op.execute(
        "INSERT INTO controller_leases (name, holder, epoch, expires_at) "
        "VALUES ('controller', NULL, 0, 0)"
    )


def downgrade() -> None:
    op.drop_table("controller_leases")

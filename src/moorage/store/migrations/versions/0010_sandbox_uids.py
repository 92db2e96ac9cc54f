"""the host uid each owner's sandboxed replicas run as

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_uids",
        sa.Column(
            "user_id",
            sa.String(length=32),
            sa.ForeignKey("users.user_id"),
            primary_key=True,
        ),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("uid"),
    )


def downgrade() -> None:
    op.drop_table("sandbox_uids")

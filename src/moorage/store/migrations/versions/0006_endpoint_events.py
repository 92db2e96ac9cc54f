"""endpoint events: an endpoint's own changes, for its events API and log

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoint_events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    # One endpoint's events, newest first, a page at a time.
    op.create_index(
        "ix_endpoint_events_endpoint_event", "endpoint_events", ["endpoint_id", "event_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_endpoint_events_endpoint_event", table_name="endpoint_events")
    op.drop_table("endpoint_events")

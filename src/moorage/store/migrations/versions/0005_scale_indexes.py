"""indexes for the reconcile pass and the endpoint list at 10,000 endpoints

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The controller's "endpoints that want replicas" query, each pass.
    op.create_index("ix_endpoints_desired_state", "endpoints", ["desired_state", "deleted_at"])
    # A user's live endpoints, counted and listed newest first one page at a time,
    # from the index alone: no sort, no table row read for a skipped one.
    op.create_index(
        "ix_endpoints_user_created",
        "endpoints",
        ["user_id", "deleted_at", sa.text("created_at DESC"), "service_id"],
    )
    # What changed since the controller last looked, after a write.
    op.create_index("ix_endpoints_updated_at", "endpoints", ["updated_at"])
    # One endpoint's live replicas, among every replica it ever had.
    op.create_index("ix_replicas_endpoint_finished", "replicas", ["endpoint_id", "finished"])
    # A replica's events in order, without a sort.
    op.create_index("ix_replica_events_replica_event", "replica_events", ["replica_id", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_replica_events_replica_event", table_name="replica_events")
    op.drop_index("ix_replicas_endpoint_finished", table_name="replicas")
    op.drop_index("ix_endpoints_updated_at", table_name="endpoints")
    op.drop_index("ix_endpoints_user_created", table_name="endpoints")
    op.drop_index("ix_endpoints_desired_state", table_name="endpoints")

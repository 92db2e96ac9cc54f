"""endpoint revisions, rollout notes, replica progress

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoint_revisions",
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("flavor_id", sa.String(length=32), nullable=False),
        sa.Column("deploy", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.service_id"]),
        sa.PrimaryKeyConstraint("endpoint_id", "revision"),
    )
    op.execute(
        "INSERT INTO endpoint_revisions (endpoint_id, revision, flavor_id, deploy, created_at) "
        "SELECT service_id, revision, flavor_id, deploy, updated_at FROM endpoints"
    )
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.add_column(sa.Column("rollout_note", sa.Text(), nullable=True))
    with op.batch_alter_table("replicas") as batch_op:
        batch_op.add_column(sa.Column("progress", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch_op:
        batch_op.drop_column("progress")
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.drop_column("rollout_note")
    op.drop_table("endpoint_revisions")

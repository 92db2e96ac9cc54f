"""user secrets and registry credentials (encrypted), and the secrets quota

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_secrets",
        sa.Column("secret_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(length=32), sa.ForeignKey("users.user_id"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "kind", "name"),
    )
    op.create_index("ix_user_secrets_user_id", "user_secrets", ["user_id"])
    with op.batch_alter_table("user_quotas") as batch_op:
        batch_op.add_column(sa.Column("secrets", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_quotas") as batch_op:
        batch_op.drop_column("secrets")
    op.drop_index("ix_user_secrets_user_id", table_name="user_secrets")
    op.drop_table("user_secrets")

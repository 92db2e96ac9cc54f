"""per-user quotas; the configured admin token is marked

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LIMITS = (
    "endpoints",
    "replicas",
    "command_bytes",
    "env_vars",
    "env_bytes",
    "name_chars",
    "description_chars",
    "log_followers",
)


def upgrade() -> None:
    op.create_table(
        "user_quotas",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=True) for name in _LIMITS),
        sa.Column("flavor_share", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(
            sa.Column("bootstrap", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Until now the configured admin token was the admin user's token named "admin".
    op.execute(
        "UPDATE api_tokens SET bootstrap = true WHERE name = 'admin' AND user_id IN "
        "(SELECT user_id FROM users WHERE name = 'admin' AND is_admin = true)"
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("bootstrap")
    op.drop_table("user_quotas")

"""auth_attempts: failed (and successful) log-ins and API-token uses, for throttling

Revision ID: i18_auth_attempts
Revises: i9_process_heartbeats
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i18_auth_attempts"
down_revision = "i9_process_heartbeats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("account", sa.String(254), nullable=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_auth_attempts"),
    )
    op.create_index("ix_auth_attempts_client", "auth_attempts", ["client", "occurred_at"])
    op.create_index("ix_auth_attempts_account", "auth_attempts", ["account", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_attempts_account", table_name="auth_attempts")
    op.drop_index("ix_auth_attempts_client", table_name="auth_attempts")
    op.drop_table("auth_attempts")

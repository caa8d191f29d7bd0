"""process heartbeats: when a worker or beat was last seen

Revision ID: i9_process_heartbeats
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i9_process_heartbeats"
down_revision = "i12_sending"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "process_heartbeats",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_process_heartbeats_kind", "process_heartbeats", ["kind"])


def downgrade() -> None:
    op.drop_index("ix_process_heartbeats_kind", table_name="process_heartbeats")
    op.drop_table("process_heartbeats")

"""tallies: a closed campaign's counts stored (issue 17 item 4: the admin at a million)

Revision ID: i17_tallies
Revises: i17_deliveries_campaign_id

One row per (kind, campaign): the figures of its stats, progress or deliverability, the highest
event id seen and when they were counted (dispatch.tallies says when they are still valid).
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i17_tallies"
down_revision = "i17_deliveries_campaign_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tallies",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("ref_id", sa.Integer(), primary_key=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("event_watermark", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tallies")

"""report tallies and watermarks: a campaign's report counts rolled up from its events

Revision ID: i14_report_tallies
Revises: i13_confirmation_campaigns
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i14_report_tallies"
down_revision = "i13_confirmation_campaigns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_tallies",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("dim", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "dim", "key", "metric", name="pk_report_tallies"),
    )
    op.create_table(
        "report_watermarks",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("refreshed_at", UTCDateTime(), nullable=False),
        sa.Column("hits_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_report_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("report_watermarks")
    op.drop_table("report_tallies")

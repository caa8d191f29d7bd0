"""event rollups: daily counts per campaign, kind, link and day; campaigns rolled up

Revision ID: i17_event_rollups
Revises: i19_site_settings
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i17_event_rollups"
down_revision = "i19_site_settings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_daily",
        sa.Column("campaign_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("link_index", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("people", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "kind", "link_index", "day", name="pk_event_daily"),
    )
    op.create_table(
        "campaign_rollups",
        sa.Column("campaign_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("rolled_at", UTCDateTime(), nullable=False),
        sa.Column("events_removed", sa.BigInteger(), nullable=False),
        sa.Column("hit_rows_removed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_campaign_rollups"),
    )


def downgrade() -> None:
    op.drop_table("campaign_rollups")
    op.drop_table("event_daily")

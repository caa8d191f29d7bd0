"""deliveries by (campaign_id, id): a campaign's recipients page by page, at any campaign size

Revision ID: i17_deliveries_campaign_id
Revises: i19_issue_versions

The admin's per-recipient list reads `WHERE campaign_id = ? [AND id > ?] ORDER BY id LIMIT 51`.
Without this index PostgreSQL walks the primary key from the first delivery ever made,
filtering for the campaign: measured at 4,000,000 deliveries, over 3 s for the newest campaign
(its ids are the last). Fan-out inserts a campaign's rows in id order, so the index grows at
its right edge for the campaign being built (a cheap insert).
"""

from alembic import op

revision = "i17_deliveries_campaign_id"
down_revision = "i19_issue_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_campaign_id", "deliveries", ["campaign_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_campaign_id", table_name="deliveries")

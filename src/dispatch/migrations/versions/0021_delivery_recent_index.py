"""deliveries (campaign_id, updated_at, id): the reputation guard's window in index order

Revision ID: i17_delivery_recent
Revises: i17_subscriber_search
"""

from alembic import op

revision = "i17_delivery_recent"
down_revision = "i17_subscriber_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_campaign_updated", "deliveries", ["campaign_id", "updated_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_campaign_updated", table_name="deliveries")

"""deliveries (campaign_id, updated_at, id): the reputation guard's window in index order

Revision ID: i17_delivery_recent
Revises: i19_audit_log
"""

from alembic import op

revision = "i17_delivery_recent"
down_revision = "i19_audit_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_campaign_updated", "deliveries", ["campaign_id", "updated_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_campaign_updated", table_name="deliveries")

"""sending: relay quotas and warm-up days; deliveries.provider; campaigns waiting reason

Revision ID: i12_sending
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i12_sending"
down_revision = "i16_deliverability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_usage",
        sa.Column("scope", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "warmup_days",
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("day_number", sa.Integer(), nullable=False),
        sa.Column("allowance", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("provider", sa.String(32), nullable=True))
        batch.create_index("ix_deliveries_campaign_provider", ["campaign_id", "provider", "status"])
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("waiting_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("waiting_until", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("waiting_until")
        batch.drop_column("waiting_reason")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_campaign_provider")
        batch.drop_column("provider")
    op.drop_table("warmup_days")
    op.drop_table("daily_usage")

"""bounces: bounce_messages (raw inbound bounce/complaint mail), suppression note and bounce_id

Revision ID: i10_bounces
Revises: i18_canonical_email
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i10_bounces"
down_revision = "i18_canonical_email"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("reporting_mta", sa.String(255), nullable=True),
        sa.Column("original_message_id", sa.String(255), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("raw_size", sa.Integer(), nullable=False),
        sa.Column("raw_truncated", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("digest", name="uq_bounce_messages_digest"),
    )
    op.create_index("ix_bounce_messages_recipient", "bounce_messages", ["recipient"])
    op.create_index("ix_bounce_messages_campaign_kind", "bounce_messages", ["campaign_id", "kind"])
    op.create_index("ix_bounce_messages_delivery", "bounce_messages", ["delivery_id"])
    with op.batch_alter_table("suppressions") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("bounce_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("suppressions") as batch:
        batch.drop_column("bounce_id")
        batch.drop_column("note")
    op.drop_table("bounce_messages")

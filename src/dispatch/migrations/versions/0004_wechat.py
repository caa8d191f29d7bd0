"""wechat tables: upload cache, drafts, mass-send chunks, template messages

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wechat_media",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("media_id", sa.String(128), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("account", "content_hash", "kind", name="uq_wechat_media_key"),
    )
    op.create_table(
        "wechat_drafts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("media_id", sa.String(128), nullable=False),
        sa.Column("article_count", sa.Integer(), nullable=False),
        sa.Column("publish_id", sa.String(64), nullable=True),
        sa.Column("article_id", sa.String(128), nullable=True),
        sa.Column("article_url", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("account", "issue_id", "content_hash", name="uq_wechat_drafts_key"),
    )
    op.create_index("ix_wechat_drafts_issue_id", "wechat_drafts", ["issue_id"])
    op.create_table(
        "wechat_mass_chunks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("batch_no", sa.Integer(), nullable=False),
        sa.Column("clientmsgid", sa.String(64), nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("draft_media_id", sa.String(128), nullable=False),
        sa.Column("openids_hash", sa.String(64), nullable=True),
        sa.Column("msg_id", sa.String(32), nullable=True),
        sa.Column("msg_data_id", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("recipient_count", sa.Integer(), nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=True),
        sa.Column("filter_count", sa.Integer(), nullable=True),
        sa.Column("sent_count", sa.Integer(), nullable=True),
        sa.Column("error_count", sa.Integer(), nullable=True),
        sa.Column("errcode", sa.Integer(), nullable=True),
        sa.Column("errmsg", sa.Text(), nullable=True),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("clientmsgid", name="uq_wechat_mass_chunks_clientmsgid"),
    )
    op.create_index(
        "ix_wechat_mass_chunks_campaign", "wechat_mass_chunks", ["campaign_id", "batch_no"]
    )
    op.create_index("ix_wechat_mass_chunks_msg_id", "wechat_mass_chunks", ["msg_id"])
    op.create_table(
        "wechat_template_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("msg_id", sa.String(32), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("openid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("msg_id", name="uq_wechat_template_messages_msg_id"),
    )
    op.create_index(
        "ix_wechat_template_messages_delivery", "wechat_template_messages", ["delivery_id"]
    )


def downgrade() -> None:
    op.drop_table("wechat_template_messages")
    op.drop_table("wechat_mass_chunks")
    op.drop_table("wechat_drafts")
    op.drop_table("wechat_media")

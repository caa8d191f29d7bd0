"""wechat: followers, tags, sync runs, callback replay cache, article stats; drafts used once

Revision ID: i11_wechat_followers
Revises: i9_issue_revisions
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i11_wechat_followers"
down_revision = "i9_issue_revisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wechat_drafts") as batch:
        batch.drop_constraint("uq_wechat_drafts_key", type_="unique")
        batch.add_column(sa.Column("used_by", sa.String(80), nullable=True))
        batch.add_column(sa.Column("consumed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=False, server_default="[]"))
        batch.create_unique_constraint("uq_wechat_drafts_used_by", ["used_by"])
    op.create_index(
        "ix_wechat_drafts_key", "wechat_drafts", ["account", "issue_id", "content_hash"]
    )
    op.create_table(
        "wechat_followers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("openid", sa.String(128), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("unionid", sa.String(128), nullable=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("subscribe_time", sa.Integer(), nullable=True),
        sa.Column("tag_ids", sa.JSON(), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("seen_run", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("account", "openid", name="uq_wechat_followers_openid"),
    )
    op.create_index("ix_wechat_followers_subscriber_id", "wechat_followers", ["subscriber_id"])
    op.create_table(
        "wechat_tags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("account", "tag_id", name="uq_wechat_tags_key"),
    )
    op.create_table(
        "wechat_sync_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_openid", sa.String(128), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unfollowed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_wechat_sync_runs_account", "wechat_sync_runs", ["account", "status"])
    op.create_table(
        "wechat_callback_seen",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("key", name="uq_wechat_callback_seen_key"),
    )
    op.create_index("ix_wechat_callback_seen_created_at", "wechat_callback_seen", ["created_at"])
    op.create_table(
        "wechat_article_stats",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("msgid", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("ref_date", sa.String(10), nullable=False),
        sa.Column("stat_date", sa.String(10), nullable=False),
        sa.Column("read_user", sa.Integer(), nullable=False),
        sa.Column("read_count", sa.Integer(), nullable=False),
        sa.Column("share_user", sa.Integer(), nullable=False),
        sa.Column("share_count", sa.Integer(), nullable=False),
        sa.Column("fav_user", sa.Integer(), nullable=False),
        sa.Column("fav_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("account", "msgid", "stat_date", name="uq_wechat_article_stats_key"),
    )
    op.create_index("ix_wechat_article_stats_campaign", "wechat_article_stats", ["campaign_id"])


def downgrade() -> None:
    op.drop_table("wechat_article_stats")
    op.drop_table("wechat_callback_seen")
    op.drop_table("wechat_sync_runs")
    op.drop_table("wechat_tags")
    op.drop_table("wechat_followers")
    op.drop_index("ix_wechat_drafts_key", "wechat_drafts")
    with op.batch_alter_table("wechat_drafts") as batch:
        batch.drop_constraint("uq_wechat_drafts_used_by", type_="unique")
        batch.drop_column("payload")
        batch.drop_column("consumed_at")
        batch.drop_column("used_by")
        batch.create_unique_constraint(
            "uq_wechat_drafts_key", ["account", "issue_id", "content_hash"]
        )

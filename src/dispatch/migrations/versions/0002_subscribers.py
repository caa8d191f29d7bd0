"""subscribers, lists, subscriptions, suppressions

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("openid", sa.String(128), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("locale", sa.String(8), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email", name="uq_subscribers_email"),
        sa.UniqueConstraint("openid", name="uq_subscribers_openid"),
    )
    op.create_table(
        "lists",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("optin", sa.String(8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lists"),
        sa.UniqueConstraint("slug", name="uq_lists_slug"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("unsubscribed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("subscriber_id", "list_id", name="pk_subscriptions"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name="fk_subscriptions_subscriber_id_subscribers",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], ondelete="CASCADE", name="fk_subscriptions_list_id_lists"
        ),
    )
    op.create_index("ix_subscriptions_list_status", "subscriptions", ["list_id", "status"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("openid", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suppressions"),
        sa.UniqueConstraint("email", name="uq_suppressions_email"),
        sa.UniqueConstraint("openid", name="uq_suppressions_openid"),
        sa.CheckConstraint(
            "email IS NOT NULL OR openid IS NOT NULL", name="ck_suppressions_address"
        ),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("ix_subscriptions_list_status", table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("lists")
    op.drop_table("subscribers")

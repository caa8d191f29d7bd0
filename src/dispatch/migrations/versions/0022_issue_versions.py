"""issue versions and their reviews (issue 19: the editor's desk, review and approval)

Every stored issue gets its current source as version 1, a draft: with review on, it must be
submitted and approved before it can be sent to lists again.

Revision ID: i19_issue_versions
Revises: i17_delivery_recent
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i19_issue_versions"
down_revision = "i17_delivery_recent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issue_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "issue_id",
            sa.Integer(),
            sa.ForeignKey("issues.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("source_text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column(
            "author_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column(
            "submitted_by_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.Column("approved_at", UTCDateTime(), nullable=True),
        sa.Column("review_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("issue_id", "number", name="uq_issue_versions_number"),
    )
    op.create_index("ix_issue_versions_issue_id", "issue_versions", ["issue_id"])
    op.create_table(
        "issue_reviews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "version_id",
            sa.Integer(),
            sa.ForeignKey("issue_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "reviewer_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("reviewer_email", sa.String(254), nullable=False),
        sa.Column("verdict", sa.String(24), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("approval_key", sa.String(48), nullable=True, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_issue_reviews_version_id", "issue_reviews", ["version_id"])
    op.execute(
        "INSERT INTO issue_versions (issue_id, number, source_text, content_hash, status, note,"
        " created_at, review_seq) SELECT id, 1, source_text, content_hash, 'draft', '',"
        " created_at, 0 FROM issues"
    )


def downgrade() -> None:
    op.drop_index("ix_issue_reviews_version_id", table_name="issue_reviews")
    op.drop_table("issue_reviews")
    op.drop_index("ix_issue_versions_issue_id", table_name="issue_versions")
    op.drop_table("issue_versions")

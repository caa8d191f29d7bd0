"""campaigns.issue_id may be empty: an import's confirmations are a campaign without an issue

Revision ID: i13_confirmation_campaigns
Revises: i11_wechat_followers
"""

import sqlalchemy as sa
from alembic import op

revision = "i13_confirmation_campaigns"
down_revision = "i11_wechat_followers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.alter_column("issue_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM campaigns WHERE issue_id IS NULL")
    with op.batch_alter_table("campaigns") as batch:
        batch.alter_column("issue_id", existing_type=sa.Integer(), nullable=False)

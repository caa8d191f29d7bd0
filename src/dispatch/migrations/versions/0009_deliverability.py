"""deliverability: lists.ad_marker (NetEase "(AD)" subject marker) and lists.import_stats

Revision ID: i16_deliverability
Revises: i13_subscriber_door
"""

import sqlalchemy as sa
from alembic import op

revision = "i16_deliverability"
down_revision = "i13_subscriber_door"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.add_column(
            sa.Column("ad_marker", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("import_stats", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("import_stats")
        batch.drop_column("ad_marker")

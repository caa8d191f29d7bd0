"""subscriber's door: public lists, preferred channel, consent source, WeChat bind codes

Revision ID: i13_subscriber_door
Revises: i10_bounces
"""

import sqlalchemy as sa
from alembic import op

from dispatch.models.base import UTCDateTime

revision = "i13_subscriber_door"
down_revision = "i10_bounces"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(
            sa.Column("preferred_channel", sa.String(8), nullable=False, server_default="email")
        )
    with op.batch_alter_table("lists") as batch:
        batch.add_column(
            sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("source", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "bind_codes",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_bind_codes"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name="fk_bind_codes_subscriber_id_subscribers",
        ),
    )
    op.create_index("ix_bind_codes_subscriber_id", "bind_codes", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_bind_codes_subscriber_id", table_name="bind_codes")
    op.drop_table("bind_codes")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("public")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("preferred_channel")

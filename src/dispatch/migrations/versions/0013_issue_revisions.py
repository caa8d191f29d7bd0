"""issue revisions: issues.revision and issues.revision_of_id

Revision ID: i9_issue_revisions
"""

import sqlalchemy as sa
from alembic import op

revision = "i9_issue_revisions"
down_revision = "i18_auth_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("revision_of_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_issues_revision_of_id_issues", "issues", ["revision_of_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_constraint("fk_issues_revision_of_id_issues", type_="foreignkey")
        batch.drop_column("revision_of_id")
        batch.drop_column("revision")

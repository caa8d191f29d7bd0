"""subscriber search by the start of the email address or name, at a million subscribers

Revision ID: i17_subscriber_search
Revises: i17_event_rollups

The admin search matches lower(email) LIKE 'q%' or lower(name) LIKE 'q%'. On PostgreSQL a
btree on lower(…) with text_pattern_ops serves such a prefix whatever the database's collation
(a plain btree does only under the C collation); SQLite gets plain expression indexes.
"""

from alembic import op

revision = "i17_subscriber_search"
down_revision = "i17_event_rollups"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_subscribers_email_prefix": "email",
    "ix_subscribers_name_prefix": "name",
}


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, column in INDEXES.items():
        ops = " text_pattern_ops" if postgresql else ""
        op.execute(f"CREATE INDEX {name} ON subscribers (lower({column}){ops})")
    if postgresql:  # statistics of the new expressions, or the planner guesses 5,000 matches
        op.execute("ANALYZE subscribers")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")

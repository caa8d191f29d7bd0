"""deliveries: two fewer index entries per row (issue 17 item 2: fan-out of a million)

Revision ID: i17_deliveries_lean
Revises: i17_tallies

Fan-out writes every index of deliveries once per recipient; the index inserts were most of
its cost (measured at 1,000,000: 833 MB of WAL with all nine, 339 MB with the primary key and
the unique key alone). Two of them served no query that the others do not:
- ix_deliveries_status_lease (status, lease_until) is read for claims in flight only (expired
  leases, dead holders' claims): now partial, WHERE status = 'sending', so pending and
  finished rows (nearly all of them) have no entry;
- ix_deliveries_status_due (status, next_attempt_at) was the old global "due rows" sweep's; the
  sweep now reads running campaigns' rows by ix_deliveries_campaign_status: dropped.
"""

import sqlalchemy as sa
from alembic import op

revision = "i17_deliveries_lean"
down_revision = "i17_tallies"
branch_labels = None
depends_on = None

SENDING_ONLY = "status = 'sending'"


def upgrade() -> None:
    op.drop_index("ix_deliveries_status_due", table_name="deliveries")
    op.drop_index("ix_deliveries_status_lease", table_name="deliveries")
    op.create_index(
        "ix_deliveries_status_lease",
        "deliveries",
        ["status", "lease_until"],
        postgresql_where=sa.text(SENDING_ONLY),
        sqlite_where=sa.text(SENDING_ONLY),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_lease", table_name="deliveries")
    op.create_index("ix_deliveries_status_lease", "deliveries", ["status", "lease_until"])
    op.create_index("ix_deliveries_status_due", "deliveries", ["status", "next_attempt_at"])

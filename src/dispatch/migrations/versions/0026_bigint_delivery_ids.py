"""delivery ids in BIGINT wherever they are stored (issue 17: past delivery 2,147,483,647)

Revision ID: i20_bigint_delivery_ids
Revises: i17_deliveries_lean

deliveries.id is BIGINT on PostgreSQL, but the four columns that name a delivery were INTEGER:
once the deliveries sequence passes 2^31 - 1 (a million recipients a month, retries and tests
reach it in the service's life; a restored or merged database may start there) the first event
of such a delivery fails its insert, and with it the whole chunk's recording, whose rows are
sent again after their lease. This widens them. SQLite's INTEGER already holds 64 bits: there
it does nothing.

What it costs on PostgreSQL: `ALTER COLUMN … TYPE bigint` rewrites each table and rebuilds all
of its indexes, under an ACCESS EXCLUSIVE lock (nothing reads or writes the table meanwhile;
all four are held until the upgrade commits). Measured on PostgreSQL 15, 2 cores, default
maintenance_work_mem (64 MB), load average about 2: events of 10,000,000 rows (2.5 GB with
its four indexes) alone 23.8 s; the whole upgrade with 3,000,000 tracking_hits 28.6 s and
27.8 s (two runs); about 2.5 s per million events, so plan minutes per hundred million.
Stop web, workers and beat first (opens, clicks and sends all write events), then
`dispatch db upgrade`. It needs free disk about the size of the four tables with their
indexes (old and new copies both exist until it commits); a row grows by at most 8 bytes
(events: 2.5 GB -> 2.55 GB).

Downgrading narrows them again, and refuses (integer out of range) once any stored id is past
2^31 - 1.
"""

import sqlalchemy as sa
from alembic import op

revision = "i20_bigint_delivery_ids"
down_revision = "i17_deliveries_lean"
branch_labels = None
depends_on = None

# (table, column, nullable): small tables first, events (the largest) last
COLUMNS = (
    ("wechat_template_messages", "delivery_id", False),
    ("bounce_messages", "delivery_id", True),
    ("tracking_hits", "delivery_id", False),
    ("events", "delivery_id", True),
)


def _alter(to: sa.types.TypeEngine, was: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: INTEGER is 64-bit already, and a batch rebuild would copy for nothing
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=to, existing_type=was, existing_nullable=nullable)


def upgrade() -> None:
    _alter(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _alter(sa.Integer(), sa.BigInteger())

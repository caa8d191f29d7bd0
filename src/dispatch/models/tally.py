"""Stored tallies: a closed campaign's counts kept instead of counted on every view.

Why: at a million recipients a campaign page, its stats and the deliverability page each
count hundreds of thousands of rows; once a campaign is closed those counts change only when a
late bounce, complaint, open, click or unsubscribe arrives. dispatch.tallies keeps one row per
(kind, campaign) with the event id it had seen and checks, on each read, that nothing has
changed since (one key probe each); otherwise it counts again.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Engine, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["LIST_KIND", "Tally"]


class Tally(Base):
    __tablename__ = "tallies"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # stats, progress, …
    ref_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the campaign's id
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    # the highest events.id visible when counting: a later event of the campaign voids it
    event_watermark: Mapped[int] = mapped_column(BigInteger, default=0)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


# Lists' member counts (dispatch.tallies.list_counts) change through a dozen paths (signup,
# import, unsubscribe, bounce, merge, erasure, WeChat followers …). Instead of each path keeping
# a counter, every connection notes when it writes `subscriptions` (or deletes subscribers or
# lists, which cascade to them) and, as it commits, deletes the stored list tallies in the same
# transaction. Here, beside the table, so every process that loads the models has the hooks.

LIST_KIND = "list"
_WRITES = re.compile(
    r"\s*(?:(?:INSERT\s+INTO|UPDATE)\s+\"?subscriptions\b"
    r"|DELETE\s+FROM\s+\"?(?:subscriptions|subscribers|lists)\b)",
    re.IGNORECASE,
)
_FLAG = "dispatch_subscriptions_written"
_VOID_PG = (
    "DO $$ BEGIN IF to_regclass('tallies') IS NOT NULL THEN "
    f"DELETE FROM tallies WHERE kind = '{LIST_KIND}'; END IF; END $$"
)


@event.listens_for(Engine, "before_cursor_execute")
def _note_write(conn, cursor, statement, parameters, context, executemany) -> None:
    if _WRITES.match(statement):
        conn.info[_FLAG] = True


@event.listens_for(Engine, "commit")
def _void_on_commit(conn) -> None:
    """The list tallies go in the transaction that changed the subscriptions."""
    if not conn.info.pop(_FLAG, False):
        return
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            cursor.execute(_VOID_PG)
        else:
            try:
                cursor.execute(f"DELETE FROM tallies WHERE kind = '{LIST_KIND}'")
            except Exception:  # noqa: BLE001 - SQLite before the tallies migration
                pass
    finally:
        cursor.close()


@event.listens_for(Engine, "rollback")
def _forget_write(conn) -> None:
    conn.info.pop(_FLAG, None)

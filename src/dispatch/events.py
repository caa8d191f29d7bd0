"""Normalised events: one row builder every writer uses, and the two ways to write rows.

Why one builder: events are written on four paths (the ORM for single state changes, a
multi-row INSERT in the delivery engine, raw DBAPI SQL on the tracking hot path in
dispatch.web.hits, bulk inserts in the CSV import). All of them take their rows from
`event_row`, so a column added to events, a default or a check on kinds changes in one place
and every path writes the same row (pinned by tests/test_events.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, TextClause, insert, text
from sqlalchemy.orm import Session

from dispatch import pg_arrays
from dispatch.models import EVENT_KINDS, Event, utcnow
from dispatch.vocabulary import Channel

# the columns of an event row, in the order raw SQL writers list them
EVENT_COLUMNS = (
    "kind",
    "channel",
    "occurred_at",
    "campaign_id",
    "delivery_id",
    "subscriber_id",
    "list_id",
    "data",
)


def event_row(
    kind: str,
    *,
    channel: str = Channel.EMAIL,
    campaign_id: int | None = None,
    delivery_id: int | None = None,
    subscriber_id: int | None = None,
    list_id: int | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The values of one event row (keys: EVENT_COLUMNS), kind checked, strings plain."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {str(kind)!r}")
    return {
        "kind": str(kind),
        "channel": str(channel),
        "occurred_at": at or utcnow(),
        "campaign_id": campaign_id,
        "delivery_id": delivery_id,
        "subscriber_id": subscriber_id,
        "list_id": list_id,
        "data": dict(data or {}),
    }


def record(
    session: Session,
    kind: str,
    *,
    channel: str = Channel.EMAIL,
    campaign_id: int | None = None,
    delivery_id: int | None = None,
    subscriber_id: int | None = None,
    list_id: int | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Event:
    """Add an event to the session (the caller's transaction commits it with the state change)."""
    event = Event(
        **event_row(
            kind,
            channel=channel,
            campaign_id=campaign_id,
            delivery_id=delivery_id,
            subscriber_id=subscriber_id,
            list_id=list_id,
            data=data,
            at=at,
        )
    )
    session.add(event)
    return event


# the literal builder of each column's array (data: one JSON array, built in insert_rows)
_PG_ARRAYS: tuple[tuple[str, Callable[[list[Any]], str]], ...] = (
    ("kind", pg_arrays.texts),
    ("channel", pg_arrays.texts),
    ("occurred_at", pg_arrays.timestamps),
    ("campaign_id", pg_arrays.ints),
    ("delivery_id", pg_arrays.ints),
    ("subscriber_id", pg_arrays.ints),
    ("list_id", pg_arrays.ints),
)


def insert_rows(connection: Session | Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write many `event_row` rows in one INSERT (the caller's transaction).

    On PostgreSQL one statement over one array per column (unnest): an executemany sent one
    INSERT per row, about 50 per chunk of a campaign, each parsed and executed on its own. The
    arrays go as literal strings (dispatch.pg_arrays): psycopg's list dumper is pure Python
    per element, 10 times the CPU.
    """
    if not rows:
        return
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    if bind.dialect.name != "postgresql":
        connection.execute(insert(Event.__table__), list(rows))
        return
    arrays = {column: build([row[column] for row in rows]) for column, build in _PG_ARRAYS}
    arrays["data"] = json.dumps([row["data"] for row in rows])
    # a text statement needs nothing of the ORM session (no autoflush): its connection is
    # cheaper to go through
    conn = connection.connection() if isinstance(connection, Session) else connection
    conn.execute(_pg_insert(), arrays)


@lru_cache(maxsize=1)
def _pg_insert() -> TextClause:
    """INSERT … SELECT FROM ROWS FROM (unnest(one typed array per column), the elements of one
    JSON array for `data`), built from the table. PostgreSQL's json keeps each element's text
    as written, so a row stores what json.dumps(row data) gives, for a third of the CPU."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()
    table = Event.__table__
    columns = ", ".join(
        "json_array_elements(CAST(:data AS JSON))"
        if c == "data"
        else f"unnest(CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[]))"
        for c in EVENT_COLUMNS
    )
    return text(
        f"INSERT INTO {table.name} ({', '.join(EVENT_COLUMNS)}) SELECT * FROM ROWS FROM ({columns})"
    )

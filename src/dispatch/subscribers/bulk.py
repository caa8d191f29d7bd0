"""Set-based reads and writes of subscriber rows for the CSV import, fast on both backends.

Why two paths: on PostgreSQL, executemany, long IN (…) lists and array parameters cost the
driver more than the server (psycopg parses every placeholder and regex-quotes every array
item), so each statement gets ONE JSON text parameter that the server unpacks
(`json_array_elements_text`, `json_to_recordset`); new subscribers and their subscriptions
go in one INSERT … RETURNING chained into a second INSERT. SQLite is in-process and fast with
plain executemany and IN lists (kept under its parameter limit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from dispatch.models.base import UTCDateTime
from dispatch.models.subscriber import Subscriber, Subscription
from dispatch.vocabulary import SubscriberStatus, SubscriptionStatus

SQLITE_IN_LIMIT = 900
subscribers = Subscriber.__table__
subscriptions = Subscription.__table__


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _in(conn: Connection, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    if is_postgres(conn):
        items = func.json_array_elements_text(
            cast(
                bindparam(None, json.dumps(list(values), ensure_ascii=False), type_=Text()), JSON()
            )
        ).table_valued("value")
        return column.in_(select(cast(items.c.value, column.type)))
    return column.in_(list(values))


def _parts(conn: Connection, values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    if is_postgres(conn):
        if values:
            yield values
        return
    for i in range(0, len(values), SQLITE_IN_LIMIT):
        yield values[i : i + SQLITE_IN_LIMIT]


def select_in(conn: Connection, query: Select, column: Any, values: Sequence[Any]) -> list[Any]:
    """Rows of `query` whose `column` is one of `values` (any number of them)."""
    rows: list[Any] = []
    for part in _parts(conn, values):
        rows.extend(conn.execute(query.where(_in(conn, column, part))).all())
    return rows


def _on_conflict_nothing(conn: Connection, table: Any) -> Any:
    if is_postgres(conn):
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def insert_subscribers(
    conn: Connection, rows: list[dict[str, Any]], list_id: int, now: datetime
) -> None:
    """New active subscribers (keys email, email_key, openid, name, locale, attributes), each with a
    confirmed subscription to the list.

    The caller has just looked these addresses up and found none, so this is a plain INSERT
    (on PostgreSQL, ON CONFLICT's speculative insertion costs a quarter of the server's time
    here). If a concurrent writer added one of them meanwhile, the unique index raises
    IntegrityError and the caller retries the chunk, which then finds the row."""
    if not rows:
        return
    if is_postgres(conn):
        conn.execute(
            text(
                "WITH t AS (SELECT * FROM json_to_recordset(CAST(:rows AS json)) "
                "  AS t(email text, email_key text, openid text, name text, locale text, "
                "attributes json)), "
                "new AS (INSERT INTO subscribers (email, email_key, openid, name, locale, "
                "attributes, status, created_at, confirmed_at) "
                "  SELECT email, email_key, openid, name, locale, attributes, :active, :now, :now "
                "FROM t "
                "  RETURNING id) "
                "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, "
                "confirmed_at) "
                "SELECT id, :list_id, :confirmed, :now, :now FROM new"
            ).bindparams(bindparam("now", type_=UTCDateTime())),
            {
                "rows": json.dumps(rows, ensure_ascii=False),
                "now": now,
                "list_id": list_id,
                "active": SubscriberStatus.ACTIVE.value,
                "confirmed": SubscriptionStatus.CONFIRMED.value,
            },
        )
        return
    conn.execute(
        insert(subscribers),
        [
            {**r, "status": SubscriberStatus.ACTIVE.value, "created_at": now, "confirmed_at": now}
            for r in rows
        ],
    )
    add_confirmed_subscriptions(
        conn,
        list_id,
        now,
        email_keys=[r["email_key"] for r in rows if r["email_key"]],
        openids=[r["openid"] for r in rows if r["openid"] and not r["email_key"]],
    )


def update_subscribers(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Set email (and its key), openid, name, locale, attributes, status of subscribers by id."""
    if not rows:
        return
    if is_postgres(conn):
        conn.execute(
            text(
                "UPDATE subscribers AS s SET email = t.email, email_key = t.email_key, "
                "openid = t.openid, name = t.name, "
                "locale = t.locale, attributes = t.attributes, status = t.status "
                "FROM json_to_recordset(CAST(:rows AS json)) AS t(id integer, email text, "
                "email_key text, openid text, "
                "name text, locale text, attributes json, status text) WHERE s.id = t.id"
            ),
            {"rows": json.dumps(rows, ensure_ascii=False)},
        )
        return
    c = subscribers.c
    conn.execute(
        update(subscribers)
        .where(c.id == bindparam("b_id"))
        .values(
            email=bindparam("b_email"),
            email_key=bindparam("b_email_key"),
            openid=bindparam("b_openid"),
            name=bindparam("b_name"),
            locale=bindparam("b_locale"),
            attributes=bindparam("b_attributes"),
            status=bindparam("b_status"),
        ),
        [{f"b_{k}": v for k, v in r.items()} for r in rows],
    )


def add_confirmed_subscriptions(
    conn: Connection,
    list_id: int,
    now: datetime,
    *,
    ids: Sequence[int] = (),
    email_keys: Sequence[str] = (),
    openids: Sequence[str] = (),
) -> None:
    """INSERT … SELECT confirmed subscriptions for the subscribers with these ids, email keys or
    openids (new rows need no id round trip); an existing subscription is left alone."""
    c = subscribers.c
    columns = ["subscriber_id", "list_id", "status", "created_at", "confirmed_at"]
    for column, values in ((c.id, ids), (c.email_key, email_keys), (c.openid, openids)):
        for part in _parts(conn, list(values)):
            source = select(
                c.id,
                literal(list_id, Integer()),
                literal(SubscriptionStatus.CONFIRMED.value, String()),
                literal(now, UTCDateTime()),
                literal(now, UTCDateTime()),
            ).where(_in(conn, column, part))
            conn.execute(_on_conflict_nothing(conn, subscriptions).from_select(columns, source))


def confirm_subscriptions(
    conn: Connection, list_id: int, subscriber_ids: Sequence[int], now: datetime
) -> None:
    """Mark these subscribers' (unconfirmed or unsubscribed) subscriptions to the list confirmed."""
    c = subscriptions.c
    for part in _parts(conn, list(subscriber_ids)):
        conn.execute(
            update(subscriptions)
            .where(and_(c.list_id == list_id, _in(conn, c.subscriber_id, part)))
            .values(
                status=SubscriptionStatus.CONFIRMED.value, confirmed_at=now, unsubscribed_at=None
            )
        )


def delete_where_in(conn: Connection, table: Any, column: Any, values: Sequence[Any]) -> None:
    for part in _parts(conn, list(values)):
        conn.execute(table.delete().where(_in(conn, column, part)))


__all__ = [
    "select_in",
    "insert_subscribers",
    "update_subscribers",
    "add_confirmed_subscriptions",
    "confirm_subscriptions",
    "delete_where_in",
]

"""CSV export of a list's members, in the columns the import reads back.

Columns: email, name, locale, openid, then every attribute key (sorted). Files are UTF-8 with a
BOM so Excel opens Chinese names correctly; the import strips the BOM. Cells that would run
as spreadsheet formulas are neutralised (`dispatch.csv_safe`); the import undoes that exactly. Rows are streamed,
never all loaded: a first pass collects the attribute keys, a second writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from dispatch import csv_safe
from dispatch.models.subscriber import SUBSCRIPTION_STATUSES, Subscriber, Subscription
from dispatch.subscribers.service import SubscriberError, get_list

BASE_COLUMNS = ("email", "name", "locale", "openid")
STREAM_ROWS = 2000


def _members(list_id: int, statuses: Sequence[str]) -> Select:
    query = (
        select(
            Subscriber.email,
            Subscriber.name,
            Subscriber.locale,
            Subscriber.openid,
            Subscriber.attributes,
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.list_id == list_id)
        .order_by(Subscriber.id)
    )
    if statuses:
        query = query.where(Subscription.status.in_(list(statuses)))
    return query


def export_csv(
    session: Session, list_slug: str, out: TextIO, *, statuses: Sequence[str] = ()
) -> int:
    """Write the list's members (optionally only these subscription statuses); returns the row count."""
    for status in statuses:
        if status not in SUBSCRIPTION_STATUSES:
            raise SubscriberError(
                "bad_status", value=status, allowed=", ".join(SUBSCRIPTION_STATUSES)
            )
    mailing_list = get_list(session, list_slug)
    query = _members(mailing_list.id, statuses)
    keys: set[str] = set()
    for row in session.execute(
        query.with_only_columns(Subscriber.attributes).execution_options(yield_per=STREAM_ROWS)
    ):
        keys.update((row.attributes or {}).keys())
    extra = sorted(k for k in keys if k not in BASE_COLUMNS)
    writer = csv_safe.writer(out, lineterminator="\r\n")  # no cell can run as a formula
    writer.writerow([*BASE_COLUMNS, *extra])
    count = 0
    for row in session.execute(query.execution_options(yield_per=STREAM_ROWS)):
        attributes = row.attributes or {}
        writer.writerow(
            [
                row.email or "",
                row.name or "",
                row.locale or "",
                row.openid or "",
                *(_cell(attributes.get(k)) for k in extra),
            ]
        )
        count += 1
    return count


def _cell(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)

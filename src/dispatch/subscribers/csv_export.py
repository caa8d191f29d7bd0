"""CSV export of a list's members, in the columns the import reads back.

Columns: email, name, locale, openid, status, then every attribute key (sorted). The status
is the person's standing on this list: confirmed, unconfirmed, unsubscribed, or the reason
they are blocked (bounced, complained, blocklisted, suppressed). Unsubscribed and blocked
people are left out unless asked for (`include_all`), so an export handed to another tool
never revives someone who left; the import reads the status column back as nothing. Files are UTF-8
with a
BOM so Excel opens Chinese names correctly; the import strips the BOM. Cells that would run
as spreadsheet formulas are neutralised (`dispatch.csv_safe`); the import undoes that exactly. Rows
are streamed,
never all loaded: a first pass collects the attribute keys, a second writes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from dispatch import csv_safe
from dispatch.models.subscriber import (
    SUBSCRIPTION_STATUSES,
    Subscriber,
    Subscription,
    Suppression,
)
from dispatch.subscribers.service import SubscriberError, get_list
from dispatch.vocabulary import SubscriberStatus, SubscriptionStatus

BASE_COLUMNS = ("email", "name", "locale", "openid", "status")
STREAM_ROWS = 2000


def _suppressed() -> Any:
    return exists().where(
        or_(
            and_(Subscriber.email_key.is_not(None), Suppression.email_key == Subscriber.email_key),
            and_(Subscriber.openid.is_not(None), Suppression.openid == Subscriber.openid),
        )
    )


def _members(list_id: int, statuses: Sequence[str], include_all: bool) -> Select:
    suppressed = _suppressed()
    query = (
        select(
            Subscriber.email,
            Subscriber.name,
            Subscriber.locale,
            Subscriber.openid,
            Subscriber.attributes,
            Subscriber.status.label("person_status"),
            Subscription.status.label("status"),
            suppressed.label("suppressed"),
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.list_id == list_id)
        .order_by(Subscriber.id)
    )
    if statuses:
        query = query.where(Subscription.status.in_(list(statuses)))
    if not include_all:
        query = query.where(
            Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
            Subscriber.status == SubscriberStatus.ACTIVE,
            ~suppressed,
        )
    return query


def _status(row: Any) -> str:
    if row.person_status != SubscriberStatus.ACTIVE:
        return str(row.person_status)
    if row.suppressed:
        return "suppressed"
    return str(row.status)


def _query(session: Session, list_slug: str, statuses: Sequence[str], include_all: bool) -> Select:
    for status in statuses:
        if status not in SUBSCRIPTION_STATUSES:
            raise SubscriberError(
                "bad_status", value=status, allowed=", ".join(SUBSCRIPTION_STATUSES)
            )
    mailing_list = get_list(session, list_slug)
    return _members(mailing_list.id, statuses, include_all)


def count_rows(
    session: Session, list_slug: str, *, statuses: Sequence[str] = (), include_all: bool = False
) -> int:
    """How many rows an export with these options writes (for a progress bar)."""
    query = _query(session, list_slug, statuses, include_all).order_by(None)
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def iter_csv(
    session: Session, list_slug: str, *, statuses: Sequence[str] = (), include_all: bool = False
) -> Iterator[tuple[str, int]]:
    """The export as (text, rows in it) chunks of STREAM_ROWS rows: memory stays the same
    whatever the list's size (rows come from a server-side cursor, STREAM_ROWS at a time)."""
    query = _query(session, list_slug, statuses, include_all)
    keys: set[str] = set()
    for row in session.execute(
        query.with_only_columns(Subscriber.attributes).execution_options(yield_per=STREAM_ROWS)
    ):
        keys.update((row.attributes or {}).keys())
    extra = sorted(k for k in keys if k not in BASE_COLUMNS)
    buffer = io.StringIO()
    writer = csv_safe.writer(buffer, lineterminator="\r\n")  # no cell can run as a formula
    writer.writerow([*BASE_COLUMNS, *extra])
    pending = 0
    for row in session.execute(query.execution_options(yield_per=STREAM_ROWS)):
        attributes = row.attributes or {}
        writer.writerow(
            [
                row.email or "",
                row.name or "",
                row.locale or "",
                row.openid or "",
                _status(row),
                *(_cell(attributes.get(k)) for k in extra),
            ]
        )
        pending += 1
        if pending == STREAM_ROWS:
            yield buffer.getvalue(), pending
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue(), pending


def export_csv(
    session: Session,
    list_slug: str,
    out: TextIO,
    *,
    statuses: Sequence[str] = (),
    include_all: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the list's members (optionally only these subscription statuses); returns the row
    count. Unsubscribed and blocked people only with `include_all`. `progress` hears how many
    rows each chunk wrote."""
    count = 0
    for text, rows in iter_csv(session, list_slug, statuses=statuses, include_all=include_all):
        out.write(text)
        count += rows
        if progress is not None and rows:
            progress(rows)
    return count


def _cell(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)

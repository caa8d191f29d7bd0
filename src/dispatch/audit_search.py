"""Reading the audit log: filters, keyset pages and the CSV export.

Why keyset pages (newest first, "older than id N") rather than OFFSET: the log only grows,
and an administrator paging back through months of rows must not make the database count
past every earlier row, nor see a row twice when a new one lands between two pages.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from dispatch import csv_safe
from dispatch.models.audit import AuditEntry

__all__ = ["AuditFilter", "CSV_COLUMNS", "Page", "csv_chunks", "entry_dict", "page"]

PAGE_SIZE = 50
CSV_CHUNK = 1000
CSV_COLUMNS = (
    "id",
    "occurred_at",
    "actor",
    "actor_user_id",
    "action",
    "target_kind",
    "target_id",
    "before",
    "after",
    "source_ip",
)


@dataclass(frozen=True)
class AuditFilter:
    """What the administrator asked for; every field is optional."""

    actor: str = ""  # a user's email (case-insensitive), "cli" or "system"
    action: str = ""  # one vocabulary.AuditAction
    target_kind: str = ""
    target_id: str = ""
    since: date | None = None  # from this day (UTC), inclusive
    until: date | None = None  # to this day (UTC), inclusive

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.actor:
            query = query.where(AuditEntry.actor == self.actor.strip().lower())
        if self.action:
            query = query.where(AuditEntry.action == self.action)
        if self.target_kind:
            query = query.where(AuditEntry.target_kind == self.target_kind)
        if self.target_id:
            query = query.where(AuditEntry.target_id == self.target_id)
        if self.since is not None:
            query = query.where(AuditEntry.occurred_at >= _day_start(self.since))
        if self.until is not None:
            query = query.where(AuditEntry.occurred_at < _day_start(self.until + timedelta(1)))
        return query


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Page:
    rows: list[AuditEntry]
    next_before: int | None  # pass as `before` for the next (older) page; None at the end


def page(
    session: Session, where: AuditFilter, *, before: int | None = None, size: int = PAGE_SIZE
) -> Page:
    """One page of matching rows, newest first, older than row `before` if given."""
    query = where.apply(select(AuditEntry)).order_by(AuditEntry.id.desc()).limit(size + 1)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = list(session.scalars(query))
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, rows[-1].id if more and rows else None)


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    """One row as the API returns it (and the CSV writes it)."""
    return {
        "id": entry.id,
        "occurred_at": entry.occurred_at.isoformat(),
        "actor": entry.actor,
        "actor_user_id": entry.actor_user_id,
        "action": entry.action,
        "target_kind": entry.target_kind,
        "target_id": entry.target_id,
        "before": entry.before,
        "after": entry.after,
        "source_ip": entry.source_ip,
    }


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def csv_chunks(session: Session, where: AuditFilter) -> Iterator[str]:
    """The matching rows as CSV text (newest first), a chunk per keyset page; every cell
    passes csv_safe, so an actor or target named "=cmd|..." never runs in a spreadsheet."""
    out = io.StringIO()
    writer = csv_safe.writer(out)
    writer.writerow(CSV_COLUMNS)
    before: int | None = None
    while True:
        batch = page(session, where, before=before, size=CSV_CHUNK)
        for entry in batch.rows:
            row = entry_dict(entry)
            writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if batch.next_before is None:
            return
        before = batch.next_before

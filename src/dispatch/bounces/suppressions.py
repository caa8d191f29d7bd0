"""Managing the suppression list: search, the bounce behind an entry, remove with a note,
CSV import and export. The admin page, the API and nothing else call these.

Why here and not in the subscriber service: these are an administrator's tools around the
list (reasons, sources, raw bounces, notes), while `subscribers.service.suppress` stays the
one primitive that changes who may be mailed.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dispatch import csv_safe, events
from dispatch.errors import DispatchError, ErrorKind
from dispatch.i18n import Catalog
from dispatch.models.bounce import BounceMessage
from dispatch.models.subscriber import Suppression
from dispatch.subscribers import service
from dispatch.subscribers.addresses import InvalidEmail, check_email
from dispatch.vocabulary import EventKind, SuppressionReason

__all__ = [
    "ImportReport",
    "bounce_view",
    "export_csv",
    "import_csv",
    "remove",
    "search",
    "suppression_view",
]

MESSAGES = Catalog(
    {
        "no_suppression": ("屏蔽记录 #{id} 不存在", "no suppression #{id}"),
        "note_required": ("解除屏蔽需要填写说明", "removing a suppression needs a note"),
        "no_email_column": (
            "CSV 第 1 行：找不到 email 列（表头需要 email）",
            "CSV line 1: no email column (the header needs 'email')",
        ),
        "bad_reason": (
            "原因须为 {allowed}，而非 {value!r}",
            "reason must be one of {allowed}, not {value!r}",
        ),
    }
)
REASONS = tuple(r.value for r in SuppressionReason)
EXPORT_FIELDS = ("email", "openid", "reason", "source", "created_at", "note", "bounce_id")


class SuppressionError(DispatchError):
    """A request about the suppression list that cannot be done (message names it)."""


def suppression_view(row: Suppression, bounce: BounceMessage | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "openid": row.openid,
        "reason": row.reason,
        "source": row.source,
        "created_at": row.created_at,
        "note": row.note or "",
        "bounce_id": row.bounce_id,
        "bounce": (
            {
                "kind": bounce.kind,
                "status": bounce.status,
                "diagnostic": bounce.diagnostic,
                "received_at": bounce.received_at,
                "campaign_id": bounce.campaign_id,
            }
            if bounce is not None
            else None
        ),
    }


def search(
    session: Session,
    *,
    q: str | None = None,
    reason: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> dict[str, Any]:
    query = select(Suppression)
    q = (q or "").replace("\x00", "").strip().lower()
    if q:
        pattern = f"%{q}%"
        query = query.where(
            or_(
                func.lower(Suppression.email).like(pattern),
                Suppression.openid.like(pattern),
                func.lower(Suppression.source).like(pattern),
                func.lower(Suppression.note).like(pattern),
            )
        )
    if reason:
        query = query.where(Suppression.reason == reason)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(
        session.scalars(
            query.order_by(Suppression.created_at.desc(), Suppression.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    bounce_ids = [r.bounce_id for r in rows if r.bounce_id]
    bounces = {
        b.id: b
        for b in (
            session.scalars(select(BounceMessage).where(BounceMessage.id.in_(bounce_ids)))
            if bounce_ids
            else []
        )
    }
    return {
        "total": total,
        "page": page,
        "per_page": per_page,
        "items": [suppression_view(r, bounces.get(r.bounce_id or 0)) for r in rows],
    }


def remove(session: Session, suppression_id: int, *, note: str, by: str = "admin") -> dict:
    """Lift one suppression with the administrator's note (kept in an `unsuppressed` event)."""
    note = (note or "").strip()
    if not note:
        raise SuppressionError(MESSAGES.both("note_required"))
    row = session.get(Suppression, suppression_id) if 0 < suppression_id < 2**31 else None
    if row is None:
        raise SuppressionError(
            MESSAGES.both("no_suppression", id=suppression_id), kind=ErrorKind.NOT_FOUND
        )
    view = suppression_view(row)
    service.unsuppress(session, email=row.email, openid=row.openid)
    events.record(
        session,
        EventKind.UNSUPPRESSED,
        channel="email" if view["email"] else "wechat",
        data={
            "email": view["email"],
            "openid": view["openid"],
            "reason": view["reason"],
            "note": note[:500],
            "by": by,
        },
    )
    session.flush()
    return view


def bounce_view(session: Session, bounce_id: int) -> dict[str, Any] | None:
    row = session.get(BounceMessage, bounce_id) if 0 < bounce_id < 2**31 else None
    if row is None:
        return None
    raw = zlib.decompress(row.raw).decode("utf-8", "replace") if row.raw else ""
    return {
        "id": row.id,
        "source": row.source,
        "received_at": row.received_at,
        "kind": row.kind,
        "recipient": row.recipient,
        "status": row.status,
        "diagnostic": row.diagnostic,
        "reporting_mta": row.reporting_mta,
        "original_message_id": row.original_message_id,
        "campaign_id": row.campaign_id,
        "delivery_id": row.delivery_id,
        "action": row.action,
        "reason": row.reason,
        "raw_size": row.raw_size,
        "raw_truncated": row.raw_truncated,
        "raw": raw,
    }


@dataclass
class ImportReport:
    added: int = 0
    already: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "already": self.already, "problems": self.problems}


def import_csv(
    session: Session, text: str, *, reason: str = "manual", source: str = "csv", by: str = "admin"
) -> ImportReport:
    """Suppress every address of a CSV with an `email` column (optional `reason`, `note`).

    Bad lines are reported by line number and skipped; good lines are stored, each once.
    """
    if reason not in REASONS:
        raise SuppressionError(
            MESSAGES.both("bad_reason", allowed=", ".join(REASONS), value=reason)
        )
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
    if "email" not in fields:
        raise SuppressionError(MESSAGES.both("no_email_column"))
    report = ImportReport()
    for line, row in _records(reader, report):
        raw = (row.get(fields["email"]) or "").strip()
        if not raw:
            continue
        try:
            email = check_email(raw)
        except InvalidEmail as exc:
            report.problems.append({"line": line, "email": raw[:320], "detail": str(exc)})
            continue
        row_reason = (row.get(fields.get("reason", ""), "") or reason).strip() or reason
        if row_reason not in REASONS:
            report.problems.append(
                {
                    "line": line,
                    "email": email,
                    "detail": MESSAGES.both(
                        "bad_reason", allowed=", ".join(REASONS), value=row_reason
                    ),
                }
            )
            continue
        if service.is_suppressed(session, email=email):
            report.already += 1
            continue
        suppression = service.suppress(session, email=email, reason=row_reason, source=source)
        suppression.note = (row.get(fields.get("note", ""), "") or "").strip()[:500]
        report.added += 1
    session.flush()
    return report


def _records(reader: csv.DictReader, report: ImportReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of each readable record, the export's formula guard undone; a malformed
    record is reported as a problem of its line and skipped."""
    rows = iter(reader)
    previous_end = reader.line_num
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. an oversized field: a bad line, not the end
            bad_line, previous_end = previous_end + 1, max(reader.line_num, previous_end + 1)
            report.problems.append(
                {"line": bad_line, "email": "", "detail": f"malformed CSV record: {exc}"}
            )
            continue
        previous_end = reader.line_num
        # undo the export's formula guard (csv_safe), so an export imports back unchanged
        yield (
            reader.line_num,
            {k: csv_safe.restore(v) if isinstance(v, str) else v for k, v in row.items()},
        )


def export_csv(session: Session) -> str:
    out = io.StringIO()
    writer = csv_safe.writer(out)  # no cell can run as a spreadsheet formula
    writer.writerow(EXPORT_FIELDS)
    for row in session.scalars(select(Suppression).order_by(Suppression.id)):
        writer.writerow(
            [
                row.email or "",
                row.openid or "",
                row.reason,
                row.source,
                row.created_at.isoformat() if row.created_at else "",
                row.note or "",
                row.bounce_id or "",
            ]
        )
    return out.getvalue()

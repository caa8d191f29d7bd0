"""Reading the audit log: filters, keyset pages without repeats, a formula-safe CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from dispatch import audit, audit_search
from dispatch.models import AuditEntry
from dispatch.vocabulary import AuditAction, AuditTarget


def _fill(engine, n: int) -> None:
    with Session(engine) as session, session.begin():
        for i in range(n):
            actor = audit.Actor("a@example.org", 1) if i % 2 else audit.CLI
            entry = audit.record(session, actor, AuditAction.EXPORT, AuditTarget.LIST, f"l{i}")
            entry.occurred_at = datetime(2026, 3, 1 + i % 3, 12, tzinfo=UTC)


def test_keyset_pages_cover_every_row_once_newest_first(engine):
    _fill(engine, 23)
    seen: list[int] = []
    before = None
    with Session(engine) as session:
        while True:
            page = audit_search.page(session, audit_search.AuditFilter(), before=before, size=10)
            seen += [e.id for e in page.rows]
            if page.next_before is None:
                break
            before = page.next_before
    assert len(seen) == 23 and seen == sorted(seen, reverse=True)


def test_filters_by_actor_action_and_days(engine):
    _fill(engine, 9)
    with Session(engine) as session:

        def count(**kw) -> int:
            where = audit_search.AuditFilter(**kw)
            return len(audit_search.page(session, where, size=100).rows)

        assert count(actor="A@Example.org") == 4
        assert count(actor="cli") == 5
        assert count(action="export") == 9 and count(action="send") == 0
        assert count(since=date(2026, 3, 2), until=date(2026, 3, 2)) == 3
        assert count(since=date(2026, 3, 2)) == 6
        assert count(until=date(2026, 3, 1)) == 3


def test_csv_neutralises_formulas_and_keeps_json(engine):
    with Session(engine) as session, session.begin():
        audit.record(
            session,
            audit.Actor.anonymous('=HYPERLINK("http://x")@evil.example'),
            AuditAction.LOG_IN_FAILED,
            AuditTarget.USER,
            "+cmd|' /C calc'!A0",
            after={"name": "张三"},
        )
    with Session(engine) as session:
        text = "".join(audit_search.csv_chunks(session, audit_search.AuditFilter()))
    header, row = list(csv.reader(io.StringIO(text)))
    assert header == list(audit_search.CSV_COLUMNS)
    values = dict(zip(header, row, strict=True))
    assert values["actor"].startswith("'=") and values["target_id"].startswith("'+")
    assert values["after"] == '{"name": "张三"}'
    assert values["action"] == "log_in_failed"


def test_entry_dict_is_json_ready(engine):
    with Session(engine) as session, session.begin():
        audit.record(session, audit.SYSTEM, AuditAction.SEND, AuditTarget.CAMPAIGN, 3)
    with Session(engine) as session:
        (entry,) = session.query(AuditEntry).all()
        d = audit_search.entry_dict(entry)
    assert d["actor"] == "system" and d["target_id"] == "3" and "T" in d["occurred_at"]
